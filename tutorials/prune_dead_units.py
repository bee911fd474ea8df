"""Prune dead units.

This tutorial is a notebook written as a script. We train a small network, find
the units that have died (their output after the ReLU is zero on every example),
and remove them with `toolkit.pruning`:

1. the data: scikit-learn's 8×8 digits, split into training and test sets;
2. train a ReLU perceptron briefly with AdamW, at a learning rate high enough that
   some units die on the way, accumulating activity statistics as we go;
3. find the dead units and report, group by group, the fraction still alive;
4. prune the model, its state and its optimiser state, and check that nothing
   changed: the same logits, the same accuracy, with fewer parameters and FLOPs;
5. carry on training the pruned model from the pruned optimiser state.

Run it with

    python tutorials/prune_dead_units.py --steps 2000 --widths 256 256

`tests/pruning/test_tutorial.py` runs `main(...)` on small settings and checks the
numbers it returns.
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from sklearn.datasets import load_digits

import toolkit
from toolkit import nn, pruning


# %% 1. The data ---------------------------------------------------------------------
#
# 1797 grey-scale 8×8 digits. We standardise the pixels with the training set's
# statistics and keep a quarter of the digits aside for testing. Everything is
# float32, as a network would be trained.


def load(seed=0):
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = len(x) // 4
    x_train, y_train, x_test, y_test = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-3
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return tuple(jnp.asarray(a) for a in (x_train, y_train, x_test, y_test))


# %% 2. Training ---------------------------------------------------------------------
#
# Every `toolkit.nn` network is called on one example as `model(x, state)`; a batch
# is a `jax.vmap` over the axis named "batch" (that is the axis BatchNorm layers
# reduce over, when a network has them). The optimiser sees only the floating-point
# arrays of the model: `eqx.filter(model, eqx.is_inexact_array)`, which is a pytree
# of the model's own class. That is what lets `pruning.prune` find the optimiser's
# moments later on.


def batched(model, state, xs):
    return jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(xs, state)


def loss_fn(model, state, xs, ys):
    logits, state = batched(model, state, xs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean(), state


def make_step(opt):
    @eqx.filter_jit
    def step(model, state, opt_state, activity, xs, ys):
        (loss, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(
            model, state, xs, ys
        )
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        model = eqx.apply_updates(model, updates)
        # The accumulator is pure and jit-able: keep it up to date every step.
        activity = pruning.update_activity(activity, model, state, xs)
        return model, state, opt_state, activity, loss

    return step


@eqx.filter_jit
def accuracy(model, state, xs, ys):
    logits, _ = batched(eqx.nn.inference_mode(model), state, xs)
    return jnp.mean(jnp.argmax(logits, axis=1) == ys), logits


def train(model, state, opt, opt_state, data, steps, batch, key):
    x_train, y_train = data
    step = make_step(opt)
    activity = pruning.init_activity(model)
    for i in range(steps):
        key, sub = jr.split(key)
        idx = jr.choice(sub, len(x_train), (batch,), replace=False)
        # Statistics of the last epoch or so only: units that died early but came
        # back to life must not count as dead.
        if i == steps - max(1, len(x_train) // batch):
            activity = pruning.init_activity(model)
        model, state, opt_state, activity, loss = step(
            model, state, opt_state, activity, x_train[idx], y_train[idx]
        )
    return model, state, opt_state, activity, float(loss)


# %% 3.–5. Find, prune, check, carry on ------------------------------------------------


def main(steps=2000, widths=(256, 256), lr=1e-2, batch=64, after=100, seed=0):
    """Run the tutorial; return its numbers in a dict (the tests check them)."""
    x_train, y_train, x_test, y_test = load(seed)
    key, init_key = jr.split(jr.key(seed))
    model, state = eqx.nn.make_with_state(nn.MLP)(64, 10, widths, key=init_key, dtype=jnp.float32)
    opt = optax.adamw(lr, weight_decay=1e-4)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    model, state, opt_state, activity, loss = train(
        model, state, opt, opt_state, (x_train, y_train), steps, batch, key
    )
    print(f"trained {steps} steps, last loss {loss:.4f}")

    # Dead on everything seen at the end of training, and on the whole training set
    # once more with the final weights (`dead_units` runs one batch, BatchNorm in
    # inference mode).
    activity = pruning.update_activity(activity, model, state, x_train)
    dead = pruning.dead_from(activity)
    print("\nlive fraction per group:")
    for name, fraction in pruning.live_fractions(dead).items():
        print(f"  {name:>10}: {fraction:6.1%}")

    small, small_state, small_opt_state = pruning.prune((model, state, opt_state), dead)

    out = {"widths_before": pruning.widths(model), "widths_after": pruning.widths(small)}
    x0 = x_train[0]
    for tag, m, s in (("before", model, state), ("after", small, small_state)):
        out[f"params_{tag}"] = pruning.count_params(m)
        out[f"flops_{tag}"] = pruning.flops(m, s, x0)
        out[f"train_accuracy_{tag}"], logits_train = map(
            np.asarray, accuracy(m, s, x_train, y_train)
        )
        out[f"test_accuracy_{tag}"], logits_test = map(np.asarray, accuracy(m, s, x_test, y_test))
        out[f"logits_{tag}"] = (logits_train, logits_test)
    out["train_logit_diff"] = float(
        np.max(np.abs(out["logits_before"][0] - out["logits_after"][0]))
    )
    out["test_logit_diff"] = float(np.max(np.abs(out["logits_before"][1] - out["logits_after"][1])))
    print(f"\n{'':>16} {'before':>10} {'after':>10}")
    print(
        f"{'widths':>16} {str(list(out['widths_before'].values())):>10} "
        f"{str(list(out['widths_after'].values())):>10}"
    )
    for k in ("params", "flops"):
        print(f"{k:>16} {out[k + '_before']:>10,} {out[k + '_after']:>10,}")
    for k in ("train_accuracy", "test_accuracy"):
        print(f"{k:>16} {out[k + '_before']:>10.4f} {out[k + '_after']:>10.4f}")
    print(f"max |Δ logits|: train {out['train_logit_diff']:.1e}, test {out['test_logit_diff']:.1e}")

    # Training goes on from the pruned optimiser state: no re-initialisation, and
    # Adam keeps its memory of the live parameters. (Shapes changed, so the step
    # compiles once more.)
    small, small_state, small_opt_state, _, loss_after = train(
        small, small_state, opt, small_opt_state, (x_train, y_train), after, batch, key
    )
    out["loss_after_more_training"] = loss_after
    out["test_accuracy_after_more_training"] = float(
        accuracy(small, small_state, x_test, y_test)[0]
    )
    print(
        f"\n{after} more steps on the pruned model: loss {loss_after:.4f}, "
        f"test accuracy {out['test_accuracy_after_more_training']:.4f}"
    )
    return out


if __name__ == "__main__":
    toolkit.enable_compilation_cache()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps")
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 256], help="hidden widths")
    parser.add_argument("--lr", type=float, default=1e-2, help="AdamW learning rate")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--after", type=int, default=100, help="training steps after pruning")
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    main(
        steps=cli.steps,
        widths=tuple(cli.widths),
        lr=cli.lr,
        batch=cli.batch,
        after=cli.after,
        seed=cli.seed,
    )
