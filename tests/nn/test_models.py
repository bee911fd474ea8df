import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

from toolkit import nn


def _key():
    return jr.key(0, impl="rbg")


MODELS = {
    "mlp": (lambda bn: nn.MLP(64, 10, (32, 16), batch_norm=bn, key=_key()), (1, 8, 8)),
    "convnet": (lambda bn: nn.ConvNet(1, 10, 8, batch_norm=bn, key=_key()), (1, 8, 8)),
    "lenet": (lambda bn: nn.ConvNet(1, 10, 28, batch_norm=bn, key=_key()), (1, 28, 28)),
    "vgg_small": (lambda bn: nn.VGG(1, 10, 8, "small", batch_norm=bn, key=_key()), (1, 8, 8)),
    "resnet_small": (
        lambda bn: nn.ResNet(3, 10, (1, 1, 1), (4, 8, 16), batch_norm=bn, key=_key()),
        (3, 16, 16),
    ),
    # The ResNet-18 layout, narrow.
    "resnet18_narrow": (
        lambda bn: nn.ResNet(3, 10, widths=(4, 4, 8, 8), batch_norm=bn, key=_key()),
        (3, 32, 32),
    ),
}


def _shapes(model, state, shape, batch=5, inference=False):
    model = eqx.nn.inference_mode(model, inference)
    xs = jax.ShapeDtypeStruct((batch, *shape), jnp.float64)
    return eqx.filter_eval_shape(
        lambda m, s, x: jax.vmap(
            m.preactivations, axis_name="batch", in_axes=(0, None), out_axes=(0, None, 0)
        )(x, s),
        model,
        state,
        xs,
    )


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("batch_norm", [False, True])
def test_contract_and_wiring(name, batch_norm):
    build, shape = MODELS[name]
    model, state = eqx.nn.make_with_state(build)(batch_norm)
    assert isinstance(model, nn.AbstractNetwork)
    for inference in (False, True):
        ys, new_state, pre = _shapes(model, state, shape, inference=inference)
        assert ys.shape == (5, 10)
        assert jax.tree.structure(new_state) == jax.tree.structure(state)
    wiring = model.wiring()
    # One entry of pre-activations per group, in the same order, unit axis after the batch.
    assert list(pre) == list(wiring)
    for k, group in wiring.items():
        assert pre[k] and all(a.shape[:2] == (5, group.size) for a in pre[k])
        # Every slot names something real, with the group's size where it says so.
        for slot in group.slots:
            if isinstance(slot, nn.Leaf):
                leaf = slot.where(model)
                assert leaf.shape[slot.axis] == group.size * slot.block
            elif isinstance(slot, nn.SizeField):
                assert getattr(slot.where(model), slot.name) == group.size * slot.block
            else:
                assert isinstance(slot.where(model), eqx.nn.StateIndex)
    norms = [s for g in wiring.values() for s in g.slots if isinstance(s, nn.StateLeaf)]
    assert bool(norms) == batch_norm


def test_call_matches_preactivations():
    model, state = eqx.nn.make_with_state(nn.MLP)(6, 3, (5,), key=_key(), dtype=jnp.float32)
    x = jnp.linspace(-1, 1, 6, dtype=jnp.float32)
    y, _ = model(x, state)
    y2, _, pre = model.preactivations(x, state)
    assert y.dtype == jnp.float32 and pre["hidden.0"][0].dtype == jnp.float32
    assert jnp.array_equal(y, y2)
    # By hand: ReLU of the hidden layer's input, then the output layer.
    h = jax.nn.relu(model.layers[0].weight @ x + model.layers[0].bias)
    assert jnp.allclose(y, model.layers[1].weight @ h + model.layers[1].bias)


def test_resnet_layout():
    model, _ = eqx.nn.make_with_state(nn.ResNet)(3, 10, widths=(4, 4, 8, 8), key=_key())
    assert [len(s) for s in model.stages] == [2, 2, 2, 2]
    # Projection shortcuts open every stage after the first, and only those.
    assert [[b.projection is not None for b in s] for s in model.stages] == [
        [False, False],
        [True, False],
        [True, False],
        [True, False],
    ]
    names = list(model.wiring())
    assert names[:3] == ["stage.0", "stage.0.block.0", "stage.0.block.1"]
    assert len(names) == 4 + 8
    # Stage 0's stream is written by the stem and both blocks' second convolutions.
    sizes = [s for s in model.wiring()["stage.0"].slots if isinstance(s, nn.SizeField)]
    writers = [s for s in sizes if s.name == "out_channels"]
    assert [w.where(model) for w in writers] == [
        model.stem,
        model.stages[0][0].conv2,
        model.stages[0][1].conv2,
    ]


def test_vgg_configs():
    assert set(nn.VGG_CONFIGS) >= {"vgg11", "vgg13", "vgg16", "vgg19", "small"}
    with pytest.raises(ValueError, match="config"):
        nn.VGG(3, 10, 32, "vgg12", key=_key())
    with pytest.raises(ValueError, match="too small"):
        nn.VGG(3, 10, 16, "vgg11", key=_key())
    with pytest.raises(ValueError, match="start with a convolution"):
        nn.VGG(3, 10, 16, ("M", 4), key=_key())
    with pytest.raises(ValueError, match="blocks"):
        nn.ResNet(3, 10, (2, 2), (4,), key=_key())


@pytest.mark.slow  # eager initialisation of 11M parameters
def test_full_size_parameter_counts():
    from toolkit import pruning

    model = nn.ResNet(3, 10, key=_key())
    assert pruning.count_params(model) == 11_173_962  # torchvision-style CIFAR ResNet-18
    model = nn.VGG(3, 10, 32, "vgg16", key=_key())
    # Conv layers without bias before BatchNorm: the usual 14,728,266 less 4,224 biases.
    assert pruning.count_params(model) == 14_728_266 - 4_224


@pytest.mark.parametrize("shape", [(3, 8, 6), (2, 7, 9)])
def test_max_pool_matches_reduce_window(shape):
    from toolkit.nn._convnet import max_pool

    def reference(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2), (1, 2, 2), "VALID")

    # After a ReLU, as in the networks: windows of zeros (ties) included.
    x = jax.nn.relu(jr.normal(jr.key(0), shape))
    x = x.at[0, :2, :2].set(0.0)
    cotangent = jr.normal(jr.key(1), (shape[0], shape[1] // 2, shape[2] // 2))
    assert max_pool(x).shape == cotangent.shape
    assert jnp.array_equal(max_pool(x), reference(x))

    def pulled(pool):
        z = jr.normal(jr.key(2), shape)
        return jax.grad(lambda z: jnp.sum(pool(jax.nn.relu(z)) * cotangent))(z)

    assert jnp.array_equal(pulled(max_pool), pulled(reference))
