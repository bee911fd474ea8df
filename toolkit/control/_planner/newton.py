import dataclasses

import jax.numpy as jnp
import lineax as lx
import optimistix as optx

from .._kkt import KKTResidual
from .base import AbstractLimitedPlanner
from .frozen import freeze
from .semismooth_newton import SemismoothNewtonRootFinder


class Newton(AbstractLimitedPlanner):
    """Semismooth Newton on the KKT conditions, alone: `optimistix.root_find` with
    [`toolkit.control.SemismoothNewtonRootFinder`][] (curvature-shifted steps, a filter line
    search in the box), differentiated through the solution by the `adjoint`.

    Fast from a good guess; its active-set steps can stall far from the solution (a
    pendulum swing-up against a torque limit, from a straight-line guess), which is
    what [`toolkit.control.Fallback`][] is for.
    """

    atol: float | None = None
    max_steps: int = 100
    linear_solver: lx.AbstractLinearSolver | None = None
    max_backtracks: int = 30
    stall_halvings: int | None = 3
    stall_shifts: int | None = 8
    stall_singular: int | None = 2
    shift_jump: bool = False
    scaled_finish: bool = True

    def solve(self, residual, w0, problem_args, linear_solver, adjoint):
        return self.limited(residual, w0, problem_args, linear_solver, None, adjoint)

    def limited(self, residual, w0, problem_args, linear_solver, step_limit, adjoint, give_up=None):
        if give_up is not None and self.scaled_finish and isinstance(residual, KKTResidual):
            residual = dataclasses.replace(residual, scaled=jnp.invert(give_up))
        options = {"nlp": residual.nlp_info(*freeze(problem_args))}
        if step_limit is not None:
            options["step_limit"] = step_limit
        if give_up is not None:
            options["give_up"] = give_up
        newton = SemismoothNewtonRootFinder(
            rtol=0.0,
            atol=self.atol,
            linear_solver=linear_solver,
            max_backtracks=self.max_backtracks,
            stall_halvings=self.stall_halvings,
            stall_shifts=self.stall_shifts,
            stall_singular=self.stall_singular,
            shift_jump=self.shift_jump,
        )
        return optx.root_find(
            residual,
            newton,
            w0,
            problem_args,
            options=options,
            max_steps=self.max_steps,
            adjoint=adjoint,
            throw=False,
        )


Newton.__init__.__doc__ = """**Arguments:**

- `atol`: converged when the max-norm of the (1/h-scaled) KKT residual is at most
    this. Default `None`: follows the problem's dtype, 1e-9 in float64 and 1e-4 in
    float32.
- `max_steps`: iterations before giving up (reported in `result`).
- `linear_solver`: a lineax solver for the Newton and adjoint systems; by default
    the transcription's own choice (block-tridiagonal for the banded ones).
- `max_backtracks`: step halvings allowed in the line search.
- `stall_halvings`: as the first attempt of a [`toolkit.control.Fallback`][], give up
    (and let the rescue start) at the first line search that needs this many halvings
    or fails; `None` spends the whole `after` budget. A solve on its own or a
    Fallback's finish never gives up early. On the problem library every first
    attempt that converges takes full steps (no halving at all), while those that
    stall needed 3 to 9 halvings at a step, or found no step at all.
- `stall_shifts`: likewise, give up at the first step that needs more than this
    many curvature shifts (each one another factorisation); `None` allows the
    solver's full `max_regularisations`.
- `stall_singular`: likewise, give up at the first step whose linear solve fails
    this many times in a row as the Hessian shift grows (the system is singular in
    its constraint rows, which no Hessian shift mends: the first steps of
    bear_populations and hiv_treatment from their default guesses failed at all 9
    shifts up to 1e3); `None` shifts on to `stall_shifts`.
- `shift_jump`: a step whose curvature test fails grows the Hessian shift to twice
    what the failed direction needed, where that is more than the tenfold step
    (one factorisation instead of several); `False` climbs tenfold only. A
    [`toolkit.control.KKTNewton`][] with a fallback sets it: cancer_treatment and
    fish_harvest each have a step that needs a shift of 10 (7 factorisations on the
    ladder, 2 with the jump). A Newton solve with no rescue behind it keeps the
    ladder: with the jump, two pure-Newton Van der Pol plans from perturbed starts
    (N = 20, mu = 0.73 and 0.81) no longer converged.
- `scaled_finish`: as the finish of a [`toolkit.control.Fallback`][], decide which
    bounds are active in the units of each unknown's curvature: the stationarity rows
    become (z - clip(z - g / s, lo, hi)) s with s = max(1, |∂²L/∂z_i²|), so an
    unknown counts as on its bound when a Newton step on it alone would reach the
    bound, not when its gradient exceeds its distance to the bound. The roots, and
    the Newton step on a fixed active set, are those of the unscaled rows, and a
    point within `atol` of the scaled rows is within `atol` of the unscaled ones.
    On bear_populations, whose control u_p carries a cost weight of 1e4 and eases
    onto its bound, the finish from the barrier path's point took 5 steps (16
    halvings: a step of 1e-4 swung u_p's stationarity row by 0.45) and takes 1;
    every other library plan takes the steps it took (trapezoidal; with
    Hermite–Simpson bear's finish also goes from 5 steps to 1). The diagonal comes
    from the transcription's Hessian blocks, or from Hessian-vector products where
    it has none; single shooting, whose Hessian is dense, keeps s = 1. The
    first attempt keeps the unscaled test: scaled, cart_pole's stalled first
    attempt took 4 steps to give up instead of 2. `False`: the unscaled test
    everywhere.
"""
