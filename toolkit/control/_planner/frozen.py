import equinox as eqx
import jax


def freeze(problem_args):
    """`problem_args` with its arrays behind `stop_gradient`: for the solves that only find a
    starting point."""
    dynamic, static = eqx.partition(problem_args, eqx.is_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)
