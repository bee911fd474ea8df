from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree, Scalar

from .._problem import OptimalControlProblem
from ._log_scaled import LogScaled, resolve
from ._scaling import Scaling


class Model(eqx.Module):
    """A model of a system's dynamics, `dx/dt = dynamics(t, x, u, args)`, together
    with its parameters.

    What is learned is every floating-point array of the model: the `args` of a
    known (parametric) model, the weights of a neural vector field held in
    `dynamics` (an `eqx.Module`), or both (a hybrid model whose known part has
    learnable `args`).

    **Fields:**

    - `dynamics`: `f(t, x, u, args) -> dx/dt`; a plain function (e.g. a library
        problem's `problem.dynamics`) or an `eqx.Module` such as
        [`toolkit.control.learning.NeuralVectorField`][].
    - `args`: the parameters passed to `dynamics`; any
        [`toolkit.control.learning.LogScaled`][] among them (see
        [`toolkit.control.learning.log_scaled`][]) is passed as its value.

    Examples: parametric `Model(problem.dynamics, {"mu": jnp.array(0.5)})`; neural
    `Model(NeuralVectorField(nx, nu, key=key))`; hybrid
    `Model(NeuralVectorField(nx, nu, known=problem.dynamics, key=key), args)`.
    """

    dynamics: Callable[[Scalar, Array, Array, PyTree[Any]], Array]
    args: PyTree[Any] = None

    def __call__(self, t: Scalar, x: Float[Array, " nx"], u: Float[Array, " nu"]) -> Array:
        return self.dynamics(t, x, u, self.resolved_args)

    @property
    def resolved_args(self) -> PyTree[Any]:
        """The parameters as `dynamics` receives them (`LogScaled` leaves replaced by
        their values)."""
        return resolve(self.args)


class NeuralVectorField(eqx.Module):
    """A neural ODE vector field, `f(t, x, u, args) = known(t, x, u, args) +
    out_scale * mlp((x - x_shift) / x_scale, (u - u_shift) / u_scale)`, optionally
    added to a partially known model (a hybrid model).

    The shifts and scales, a [`toolkit.control.learning.Scaling`][], normalise the
    inputs and outputs and are not learned. The last layer starts at zero, so that
    a fresh hybrid model is exactly its known part.

    The network's term in the derivative of a state marked `proportional` is
    multiplied by `x_i / x_shift_i`: it vanishes with the state, so that a positive
    state (a population, a volume) stays positive, as the known part's own terms
    usually keep it. A hybrid model needs this where its known part is undefined
    below zero (tumour's `log(p / q)`): an additive correction of the typical size
    of `q'` drives a trajectory whose `q` has decayed near zero negative at the
    first training step.

    **Arguments:**

    - `nx`, `nu`: the state and control sizes.
    - `width_size`, `depth`: of the `eqx.nn.MLP` (default 32, 2).
    - `known`: an optional known part `f(t, x, u, args)`; `None` for a pure neural
        ODE.
    - `activation`: default `jax.nn.softplus` (smooth, so that the planner's
        Newton steps and implicit derivatives see a smooth vector field).
    - `scaling`: a [`toolkit.control.learning.Scaling`][], e.g.
        `Scaling.from_data(train)`; default none (`Scaling.identity(nx, nu)`).
    - `proportional`: `nx` booleans, the states whose term is proportional to the
        state (above); each needs `x_shift_i > 0` (the mean of positive data, as
        `Scaling.from_data` sets it). Default none.
    - `key`: a PRNG key for the initial weights.
    - `dtype`: default the default float type.
    """

    mlp: eqx.nn.MLP
    known: Callable[[Scalar, Array, Array, PyTree[Any]], Array] | None
    scaling: Scaling
    proportional: tuple[bool, ...] = eqx.field(static=True)

    def __init__(
        self,
        nx: int,
        nu: int,
        *,
        width_size: int = 32,
        depth: int = 2,
        known: Callable[[Scalar, Array, Array, PyTree[Any]], Array] | None = None,
        activation: Callable[[Array], Array] = jax.nn.softplus,
        scaling: Scaling | None = None,
        proportional: Sequence[bool] | None = None,
        key: PRNGKeyArray,
        dtype=None,
    ):
        dtype = jnp.result_type(float) if dtype is None else dtype
        mlp = eqx.nn.MLP(
            nx + nu, nx, width_size, depth, activation=activation, key=key, dtype=dtype
        )
        last = mlp.layers[-1]
        last = eqx.tree_at(lambda l: l.weight, last, jnp.zeros_like(last.weight))
        if last.bias is not None:
            last = eqx.tree_at(lambda l: l.bias, last, jnp.zeros_like(last.bias))
        self.mlp = eqx.tree_at(lambda m: m.layers[-1], mlp, last)
        self.known = known
        if scaling is None:
            scaling = Scaling.identity(nx, nu, dtype)
        shapes = tuple(a.shape for a in jax.tree_util.tree_leaves(scaling))
        if shapes != ((nx,), (nx,), (nu,), (nu,), (nx,)):
            raise ValueError(
                f"`scaling` has arrays of shapes {shapes}, this field needs nx = {nx} "
                f"and nu = {nu}."
            )
        self.scaling = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), scaling)
        proportional = (False,) * nx if proportional is None else tuple(map(bool, proportional))
        if len(proportional) != nx:
            raise ValueError(f"`proportional` has {len(proportional)} entries, nx = {nx}.")
        shift = self.scaling.x_shift
        if not isinstance(shift, jax.core.Tracer):
            bad = [i for i, p in enumerate(proportional) if p and not float(shift[i]) > 0]
            if bad:
                raise ValueError(
                    f"`proportional` states {bad} need a positive `scaling.x_shift` (their "
                    f"reference size), got {[float(shift[i]) for i in bad]}."
                )
        self.proportional = proportional

    @property
    def x_shift(self):
        return self.scaling.x_shift

    @property
    def x_scale(self):
        return self.scaling.x_scale

    @property
    def u_shift(self):
        return self.scaling.u_shift

    @property
    def u_scale(self):
        return self.scaling.u_scale

    @property
    def out_scale(self):
        return self.scaling.out_scale

    def __call__(self, t: Scalar, x: Array, u: Array, args: PyTree[Any]) -> Array:
        out = self.scaling.outputs(self.mlp(self.scaling.inputs(x, u)))
        if any(self.proportional):
            mask = jnp.array(self.proportional)
            reference = jnp.where(mask, jax.lax.stop_gradient(self.scaling.x_shift), 1.0)
            out = jnp.where(mask, out * x / reference, out)
        if self.known is not None:
            out = out + self.known(t, x, u, args)
        return out


def init_neural_vector_field(
    key: PRNGKeyArray,
    problem: OptimalControlProblem,
    *,
    width_size: int = 32,
    depth: int = 2,
    known: Callable[[Scalar, Array, Array, PyTree[Any]], Array] | None = None,
    scaling: Scaling | None = None,
    x_scale: ArrayLike | None = None,
    out_scale: ArrayLike = 1.0,
    proportional: Sequence[bool] | None = None,
) -> NeuralVectorField:
    """A [`toolkit.control.learning.NeuralVectorField`][] sized for `problem`.

    **Arguments:**

    - `key`: a PRNG key for the initial weights.
    - `problem`: the [`toolkit.control.OptimalControlProblem`][] whose sizes (and
        boxes) are used.
    - `width_size`, `depth`, `known`, `proportional`: as in
        [`toolkit.control.learning.NeuralVectorField`][].
    - `scaling`: a [`toolkit.control.learning.Scaling`][]; with data, prefer
        `Scaling.from_data(train)`, which suits states spanning orders of magnitude.
        Default `Scaling.from_problem(problem, x_scale=x_scale, out_scale=out_scale)`:
        the inputs normalised by the problem's boxes where they are finite (the state
        box, else `x_scale`; the control box).
    - `x_scale`, `out_scale`: for the default scaling only.

    **Returns:**

    A `NeuralVectorField` whose MLP's last layer is zero.
    """
    if scaling is None:
        scaling = Scaling.from_problem(problem, x_scale=x_scale, out_scale=out_scale)
    elif x_scale is not None:
        raise ValueError("Give `scaling` or `x_scale`, not both.")
    return NeuralVectorField(
        problem.nx,
        problem.nu,
        width_size=width_size,
        depth=depth,
        known=known,
        scaling=scaling,
        proportional=proportional,
        key=key,
        dtype=problem.x0.dtype,
    )


class _ModelDynamics(eqx.Module):
    model: Model

    def __call__(self, t, x, u, args):
        del args  # the model carries its own parameters
        return self.model(t, x, u)


def learned_problem(problem: OptimalControlProblem, model: Model) -> OptimalControlProblem:
    """The same optimal control problem (costs, `x0`, horizon, boxes) with its
    dynamics replaced by a learned [`toolkit.control.learning.Model`][].

    The model, weights and parameters included, becomes part of the problem, so
    `control.plan(learned_problem(problem, model), transcription, args=args)` plans
    with the model, and derivatives of the plan w.r.t. the model come from the
    planner's implicit function theorem. `args` (passed to `plan`) still go to the
    problem's running and terminal costs; the model uses its own `model.args`.
    """
    return eqx.tree_at(lambda p: p.dynamics, problem, _ModelDynamics(model))


def trainable(model: Model) -> Model:
    """The filter (a pytree of bools shaped like `model`) of what is learned: its
    floating-point arrays, less the [`toolkit.control.learning.Scaling`][] of neural
    vector fields and the references of [`toolkit.control.learning.LogScaled`][]
    parameters, which are frozen."""

    def spec(x):
        if isinstance(x, LogScaled):
            return LogScaled(False, eqx.is_inexact_array(x.log_ratio))
        if isinstance(x, NeuralVectorField):
            s = jax.tree_util.tree_map(eqx.is_inexact_array, x)
            frozen = jax.tree_util.tree_map(lambda _: False, s.scaling)
            return eqx.tree_at(lambda v: v.scaling, s, frozen)
        return eqx.is_inexact_array(x)

    return jax.tree_util.tree_map(
        spec, model, is_leaf=lambda x: isinstance(x, (NeuralVectorField, LogScaled))
    )


def random_direction(key: PRNGKeyArray, model: Model) -> Model:
    """A random direction in the space of a model's trainable arrays: a pytree like
    `eqx.filter(model, trainable(model))` (`None` off the trainable leaves) of
    standard normal arrays, e.g. for finite-difference checks of gradients or for
    `eqx.apply_updates(model, direction)`."""
    spec = trainable(model)
    params = eqx.filter(model, spec)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jr.split(key, max(len(leaves), 1))
    leaves = [jr.normal(k, jnp.shape(a), jnp.result_type(a)) for k, a in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(treedef, leaves)
