import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from toolkit import nn, pruning


def _key():
    return jr.key(0, impl="rbg")


def test_mlp_counts():
    model, state = eqx.nn.make_with_state(nn.MLP)(64, 10, (32, 16), key=_key())
    assert pruning.count_params(model) == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert pruning.flops(model, state, jnp.zeros(64)) == 2 * (64 * 32 + 32 * 16 + 16 * 10)
    assert pruning.widths(model) == {"hidden.0": 32, "hidden.1": 16}
    bn, _ = eqx.nn.make_with_state(nn.MLP)(64, 10, (32, 16), batch_norm=True, key=_key())
    # Hidden layers lose their bias and gain a BatchNorm scale and shift; running
    # statistics are not parameters.
    assert pruning.count_params(bn) == pruning.count_params(model) + 32 + 16
    # Initial states kept inside a model built without make_with_state do not count.
    assert pruning.count_params(nn.MLP(64, 10, (32, 16), batch_norm=True, key=_key())) == (
        pruning.count_params(bn)
    )


def test_conv_flops():
    model, state = eqx.nn.make_with_state(nn.ConvNet)(
        1, 10, 28, channels=(6, 16), hidden=(120, 84), kernel_size=5, key=_key()
    )
    macs = (
        28 * 28 * 6 * 1 * 25  # conv 1, "same" padding
        + 14 * 14 * 16 * 6 * 25  # conv 2 after a pool
        + 16 * 7 * 7 * 120
        + 120 * 84
        + 84 * 10
    )
    assert pruning.flops(model, state, jnp.zeros((1, 28, 28))) == 2 * macs


def test_counts_shrink_with_pruning():
    model, state = eqx.nn.make_with_state(nn.MLP)(8, 3, (6, 5), key=_key())
    dead = {"hidden.0": jnp.arange(6) < 2, "hidden.1": jnp.arange(5) == 4}
    small = pruning.prune(model, dead)
    assert pruning.widths(small) == {"hidden.0": 4, "hidden.1": 4}
    assert pruning.count_params(small) == 8 * 4 + 4 + 4 * 4 + 4 + 4 * 3 + 3
    assert pruning.flops(small, state, jnp.zeros(8)) == 2 * (8 * 4 + 4 * 4 + 4 * 3)
