from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Scalar


def _as_array(x, name: str) -> Array:
    try:
        return jnp.asarray(x, dtype=jnp.result_type(float))
    except TypeError as e:
        raise ValueError(f"`{name}` must be an array of floats, got {x!r}.") from e


def _check_box(box, size: int | None, name: str) -> tuple[Array, Array]:
    if not (isinstance(box, tuple | list) and len(box) == 2):
        raise ValueError(f"`{name}` must be a pair (lo, hi) of arrays, got {box!r}.")
    lo, hi = (_as_array(b, name) for b in box)
    if lo.ndim != 1 or hi.ndim != 1 or lo.shape != hi.shape:
        raise ValueError(
            f"`{name}` must be a pair of 1-D arrays of equal length, got shapes "
            f"{lo.shape} and {hi.shape}."
        )
    if size is not None and lo.shape[0] != size:
        raise ValueError(f"`{name}` has length {lo.shape[0]} but the state has {size} components.")
    if _is_concrete(lo) and _is_concrete(hi):
        bad = np.flatnonzero(np.asarray(lo) > np.asarray(hi))
        if bad.size:
            raise ValueError(
                f"`{name}` has lo > hi at component(s) {bad.tolist()}: "
                f"lo={np.asarray(lo)[bad].tolist()}, hi={np.asarray(hi)[bad].tolist()}."
            )
        nan = np.flatnonzero(np.isnan(np.asarray(lo)) | np.isnan(np.asarray(hi)))
        if nan.size:
            raise ValueError(f"`{name}` contains NaN at component(s) {nan.tolist()}.")
    return lo, hi


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_finite(x: Array, name: str) -> None:
    # Only concrete values: users `vmap` and `grad` over x0, t1 and xT, whose tracers
    # pass through unchecked.
    if not _is_concrete(x):
        return
    value = np.asarray(x)
    if value.ndim == 0:
        if not np.isfinite(value):
            raise ValueError(f"`{name}` must be finite, got {value}.")
        return
    bad = np.flatnonzero(np.invert(np.isfinite(value)))
    if bad.size:
        raise ValueError(
            f"`{name}` must be finite, got {value[bad].tolist()} at component(s) {bad.tolist()}."
        )


class OptimalControlProblem(eqx.Module):
    """A continuous-time optimal control problem in Bolza form,

    minimise    phi(x(t1), args) + integral_{t0}^{t1} L(t, x, u, args) dt
    subject to  dx/dt = f(t, x, u, args),   x(t0) = x0,   [x(t1) = xT],
                u_lo <= u(t) <= u_hi,   [x_lo <= x(t) <= x_hi].

    Maximisation problems are written as minimisations of the negated objective.
    A discrete-time problem, x_{k+1} = g(t_k, x_k, u_k, args) with a cost summed over
    the steps, passes its map wrapped in [`toolkit.control.DiscreteDynamics`][] as
    `dynamics` and is planned with [`toolkit.control.Discrete`][].
    Everything a user may want to learn or differentiate goes in `args`, which is
    passed to every function and never baked into them. `args_check`, if given, is
    called as `args = args_check(args)` by `control.plan`, outside its compiled
    program: it raises `ValueError` on malformed parameters, and on values out of range
    when they are concrete; on traced values (under a user's `jit` or `vmap`) it may
    attach `eqx.error_if` range checks instead (see `control.problems.ParameterCheck`).
    If it also has a method `report(args) -> (args, out_of_range)`, as
    `ParameterCheck` does, `control.plan(..., throw=False)` calls that on traced values
    and reports `RESULTS.parameter_out_of_range` in the result instead.
    """

    dynamics: Callable[[Scalar, Array, Array, PyTree], Array]
    running_cost: Callable[[Scalar, Array, Array, PyTree], Scalar]
    x0: Float[Array, " nx"]
    t1: Float[Array, ""]
    t0: Float[Array, ""]
    terminal_cost: Callable[[Array, PyTree], Scalar] | None
    xT: Float[Array, " nx"] | None
    u_bounds: tuple[Float[Array, " nu"], Float[Array, " nu"]]
    x_bounds: tuple[Float[Array, " nx"], Float[Array, " nx"]] | None
    args_check: Callable[[PyTree], PyTree] | None

    def __init__(
        self,
        dynamics: Callable[[Scalar, Array, Array, PyTree], Array],
        running_cost: Callable[[Scalar, Array, Array, PyTree], Scalar],
        x0: ArrayLike,
        t1: ArrayLike,
        terminal_cost: Callable[[Array, PyTree], Scalar] | None = None,
        xT: ArrayLike | None = None,
        u_bounds: tuple[ArrayLike, ArrayLike] | None = None,
        x_bounds: tuple[ArrayLike, ArrayLike] | None = None,
        *,
        t0: ArrayLike = 0.0,
        args_check: Callable[[PyTree], PyTree] | None = None,
    ):
        if not callable(dynamics):
            raise ValueError("`dynamics` must be a function f(t, x, u, args).")
        if not callable(running_cost):
            raise ValueError("`running_cost` must be a function L(t, x, u, args).")
        if terminal_cost is not None and not callable(terminal_cost):
            raise ValueError("`terminal_cost` must be a function phi(xT, args).")
        if u_bounds is None:
            raise ValueError(
                "`u_bounds=(lo, hi)` is required: the number of controls is read from "
                "it (use +-inf for an unbounded control)."
            )
        if args_check is not None and not callable(args_check):
            raise ValueError("`args_check` must be a function args -> args.")
        self.args_check = args_check
        self.dynamics = dynamics
        self.running_cost = running_cost
        self.terminal_cost = terminal_cost
        self.x0 = _as_array(x0, "x0")
        if self.x0.ndim != 1 or self.x0.shape[0] == 0:
            raise ValueError(f"`x0` must be a non-empty 1-D array, got shape {self.x0.shape}.")
        _check_finite(self.x0, "x0")
        nx = self.x0.shape[0]
        self.t0 = _as_array(t0, "t0")
        self.t1 = _as_array(t1, "t1")
        if self.t0.ndim != 0 or self.t1.ndim != 0:
            raise ValueError("`t0` and `t1` must be scalars.")
        _check_finite(self.t0, "t0")
        _check_finite(self.t1, "t1")
        if _is_concrete(self.t0) and _is_concrete(self.t1) and not self.t1 > self.t0:
            raise ValueError(f"`t1` must be greater than `t0`, got t0={self.t0}, t1={self.t1}.")
        self.u_bounds = _check_box(u_bounds, None, "u_bounds")
        if self.u_bounds[0].shape[0] == 0:
            raise ValueError("`u_bounds` must describe at least one control.")
        self.x_bounds = None if x_bounds is None else _check_box(x_bounds, nx, "x_bounds")
        if xT is None:
            self.xT = None
        else:
            self.xT = _as_array(xT, "xT")
            if self.xT.shape != (nx,):
                raise ValueError(f"`xT` must have the shape of `x0`, {(nx,)}, got {self.xT.shape}.")
            _check_finite(self.xT, "xT")
            if self.x_bounds is not None and _is_concrete(self.xT):
                lo, hi = (np.asarray(b) for b in self.x_bounds)
                bad = np.flatnonzero((np.asarray(self.xT) < lo) | (np.asarray(self.xT) > hi))
                if bad.size:
                    raise ValueError(
                        f"`xT` lies outside `x_bounds` at component(s) {bad.tolist()}: "
                        "the final-state constraint can never be met."
                    )

    @property
    def nx(self) -> int:
        return self.x0.shape[0]

    @property
    def nu(self) -> int:
        return self.u_bounds[0].shape[0]

    def check(self, args: PyTree[Any]) -> None:
        """Check, by abstract evaluation, that the functions return what they must.

        **Arguments:**

        - `args`: the parameters passed to the problem's functions.

        Raises `ValueError` naming the function and the wrong shape. (The parameters
        themselves are `args_check`'s business: `control.plan` calls it before this.)
        """
        t = jax.ShapeDtypeStruct((), self.x0.dtype)
        x = jax.ShapeDtypeStruct((self.nx,), self.x0.dtype)
        u = jax.ShapeDtypeStruct((self.nu,), self.x0.dtype)
        f = jax.eval_shape(self.dynamics, t, x, u, args)
        if getattr(f, "shape", None) != (self.nx,):
            raise ValueError(
                f"`dynamics` must return an array of shape {(self.nx,)} (the shape of "
                f"x0), got {getattr(f, 'shape', f)}."
            )
        L = jax.eval_shape(self.running_cost, t, x, u, args)
        if getattr(L, "shape", None) != ():
            raise ValueError(
                f"`running_cost` must return a scalar, got shape {getattr(L, 'shape', L)}."
            )
        if self.terminal_cost is not None:
            phi = jax.eval_shape(self.terminal_cost, x, args)
            if getattr(phi, "shape", None) != ():
                raise ValueError(
                    f"`terminal_cost` must return a scalar, got shape {getattr(phi, 'shape', phi)}."
                )
