import equinox as eqx
import jax


def freeze(data):
    """`data` with its arrays behind `stop_gradient`: for the solves that only find a
    starting point."""
    dynamic, static = eqx.partition(data, eqx.is_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)
