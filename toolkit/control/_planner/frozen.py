import equinox as eqx
import jax


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
