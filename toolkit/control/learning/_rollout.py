import jax
import jax.numpy as jnp
from jaxtyping import Scalar

from ..._jit import filter_jit
from ._model import Model
from ._simulate import AbstractSimulator, simulate, Simulator
from ._trajectories import Trajectories


@filter_jit
def rollout_error(
    model: Model, data: Trajectories, *, simulator: AbstractSimulator = Simulator()
) -> Scalar:
    """The relative RMS error of full-horizon rollouts: the model simulated over each
    trajectory's whole horizon, from its (known) initial state under its recorded
    controls, against the observations after the first,

    `sqrt(mean_{b, t, i} ((x̂_{bti} - x_{bti}) / r_i)²)`, `r_i = sqrt(mean_{b, t}
    x_{bti}²)`,

    each state's error relative to that state's RMS over the same observations, so
    that states of different sizes count alike (a state observed as zero throughout
    counts its absolute error).

    Unlike a multiple-shooting loss, which restarts every few samples from the data,
    this is how the model does when it is used: a plan is a full-horizon prediction.
    0 is a perfect model; a model that predicts zero scores 1; a rollout that blows up
    scores `inf` or `nan`.

    **Arguments:**

    - `model`: a [`toolkit.control.learning.Model`][].
    - `data`: [`toolkit.control.learning.Trajectories`][], e.g. held out from
        training.
    - `simulator`: a [`toolkit.control.learning.Simulator`][].

    **Returns:**

    The scalar error.
    """

    def one(ts, x0, controls):
        return simulate(
            model.dynamics, x0, controls, ts, args=model.resolved_args, simulator=simulator
        )

    pred = jax.vmap(one)(data.ts, data.x0s, data.controls)[:, 1:]
    xs = data.xs[:, 1:]
    rms = jnp.sqrt(jnp.mean(xs**2, axis=(0, 1)))
    rms = jnp.where(rms > 0, rms, 1.0)
    return jnp.sqrt(jnp.mean(((pred - xs) / rms[None, None]) ** 2))
