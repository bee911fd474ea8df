import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

from .._transcription.base import AbstractTranscription


class ControlSmoothness(AbstractTranscription):
    """A transcription whose objective adds a penalty on the plan's control changes,
    `weight * sum_k |u_{k+1} - u_k|²` over consecutive nodes of the plan (`sol.us`).

    For end-to-end learning: a plan made with a learned model exploits the model's
    errors, and the cheapest way to do so is often to chatter, switching the control
    from node to node where the model is wrong in its favour; on the true system such
    a plan does badly. The penalty keeps plans from chattering. Plan with it during
    end-to-end training and when scoring the models, e.g.
    `fit_end_to_end(model, problem, ControlSmoothness(Trapezoidal(N), 1e-2), loss)`,
    or `python -m toolkit learn --smoothness 1e-2`; the true-system cost
    ([`toolkit.control.learning.TrueCost`][]) of such a plan does not include it.

    The penalty is not scaled by the step: a smooth control's differences shrink with
    the step and so does their penalty, while a chattering one's do not. The plan's
    `sol.cost` is the penalised objective. Consecutive nodes lie in neighbouring blocks
    of the banded transcriptions, so the KKT Jacobian keeps its block-tridiagonal
    structure.

    **Arguments:**

    - `transcription`: the transcription to wrap, e.g. `control.Trapezoidal(N)`.
    - `weight`: the penalty's weight (>= 0; 0 plans as `transcription` does).
    """

    transcription: AbstractTranscription
    weight: float

    def __check_init__(self):
        if isinstance(self.weight, float | int) and not self.weight >= 0:
            raise ValueError(f"`weight` must be a number >= 0, got {self.weight!r}.")

    @property
    def N(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.transcription.N

    def penalty(self, z: Float[Array, "M bz"], problem, args) -> Scalar:
        """`weight * sum_k |u_{k+1} - u_k|²` of the node controls of `z`."""
        _, _, us = self.transcription.trajectory(z, problem, args)
        return self.weight * jnp.sum(jnp.diff(us, axis=0) ** 2)

    def objective(self, z, problem, args):
        return self.transcription.objective(z, problem, args) + self.penalty(z, problem, args)

    def objective_and_constraints(self, z, problem, args):
        objective, constraints = self.transcription.objective_and_constraints(z, problem, args)
        return objective + self.penalty(z, problem, args), constraints

    def constraints(self, z, problem, args):
        return self.transcription.constraints(z, problem, args)

    def layout(self, problem):
        return self.transcription.layout(problem)

    def initial_guess(self, problem, args, states=None):
        return self.transcription.initial_guess(problem, args, states)

    def bounds(self, problem, args):
        return self.transcription.bounds(problem, args)

    def constraint_mask(self, problem) -> np.ndarray:
        return self.transcription.constraint_mask(problem)

    def trajectory(self, z, problem, args):
        return self.transcription.trajectory(z, problem, args)

    def check(self, problem):
        self.transcription.check(problem)

    def costates(self, multipliers, problem):
        return self.transcription.costates(multipliers, problem)

    def linear_solver(self):
        return self.transcription.linear_solver()

    def step(self, problem):
        return self.transcription.step(problem)
