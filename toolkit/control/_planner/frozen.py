import equinox as eqx
import jax
import jax.numpy as jnp


def freeze(problem_args):
    """`problem_args` with its arrays behind `stop_gradient`: for the solves that only find a
    starting point."""
    dynamic, static = eqx.partition(problem_args, eqx.is_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)


def tie(tree, x):
    """`(tree, x)` through `jax.lax.optimization_barrier`: computations on the returned
    arrays of `tree` then depend on `x`, so that XLA cannot hoist them out of a loop
    that carries `x` (its loop-invariant code motion would run them before the loop,
    even where the loop runs no iteration)."""
    dynamic, static = eqx.partition(tree, eqx.is_array)
    dynamic, x = jax.lax.optimization_barrier((dynamic, x))
    return eqx.combine(dynamic, static), x


def at_most_once(needed, compute, default, operands):
    """`compute(operands)` where `needed`, else `default` (a pytree of arrays shaped
    as `compute`'s output).

    A while loop whose body runs at most once, rather than a `lax.cond`: under
    `jax.vmap` a cond computes both branches for every element, while the loop runs
    its body only if some element needs it (and keeps `default` for the others).
    `operands` are tied to the loop's carry (`tie`), so that XLA's loop-invariant code
    motion cannot hoist the work on them out of the loop and run it at every call."""

    def not_done(carry):
        return jnp.invert(carry[1])

    def once(carry):
        tied, _ = tie(operands, carry[0])
        return compute(tied), jnp.asarray(True)

    out, _ = jax.lax.while_loop(not_done, once, (default, jnp.invert(needed)))
    return out
