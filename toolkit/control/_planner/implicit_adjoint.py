import functools as ft

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optimistix as optx

from .shift_on_failure import solve_failed


class ImplicitAdjointWithoutCallback(optx.ImplicitAdjoint):
    """`optimistix.ImplicitAdjoint` whose derivative holds no host callback: a failed
    linear solve of the implicit function theorem gives NaN derivatives instead of
    raising.

    optimistix solves for the derivative with `lineax.linear_solve(..., throw=True)`,
    and lineax's transpose rule (reverse mode) always throws: both put an
    `eqx.error_if` host callback into every program that differentiates a plan, and
    JAX's persistent compilation cache refuses to store such a program, so it is
    compiled again in every process. Here the derivative is one
    `jax.lax.custom_linear_solve` whose forward and transposed solves factorise
    once with `linear_solver` and call it directly, without lineax's primitive. The
    derivatives are the same (the same operator, solver and factorisation). A solve
    that fails (a singular or unstable pivot, a non-finite result) makes the
    derivative NaN, which is what a user sees under their own `jax.jit` too; the
    plan itself still reports its own failures (`Solution.result`).
    """

    def apply(self, primal_fn, rewrite_fn, inputs, tags):
        inputs = inputs + (ft.partial(eqxi.while_loop, kind="lax"),)
        root, residual = _implicit(primal_fn, rewrite_fn, inputs, tags, self.linear_solver)
        return root, jtu.tree_map(eqxi.nondifferentiable_backward, residual)


ImplicitAdjointWithoutCallback.__init__.__doc__ = """**Arguments:**

- `linear_solver`: the lineax solver of the implicit function theorem's linear
    systems (forward and transposed).
"""


def _is_none(x):
    return x is None


def _for_jac(root, args):
    fn_rewrite, residual, inputs = args
    return fn_rewrite(root, residual, inputs)


@eqx.filter_custom_jvp
def _implicit(fn_primal, fn_rewrite, inputs, tags, linear_solver):
    del fn_rewrite, tags, linear_solver
    return jtu.tree_map(jnp.asarray, fn_primal(inputs))


@_implicit.def_jvp
def _implicit_jvp(primals, tangents):
    fn_primal, fn_rewrite, inputs, tags, linear_solver = primals
    t_inputs = tangents[2]
    no_tangent = jtu.tree_map(_is_none, t_inputs, is_leaf=_is_none)
    nondiff, diff = eqx.partition(inputs, no_tangent, is_leaf=_is_none)
    root, residual = _implicit(fn_primal, fn_rewrite, inputs, tags, linear_solver)

    def _for_jvp(_diff):
        return fn_rewrite(root, residual, eqx.combine(_diff, nondiff))

    operator = lx.JacobianLinearOperator(_for_jac, root, (fn_rewrite, residual, inputs), tags=tags)
    _, jvp_diff = jax.jvp(_for_jvp, (diff,), (t_inputs,))
    t_root = jtu.tree_map(jnp.negative, _solve(operator, jvp_diff, linear_solver))
    if hasattr(jax.custom_derivatives, "zero_from_primal"):
        t_residual = jax.custom_derivatives.zero_from_primal(residual, symbolic_zeros=True)
    else:  # older JAX
        t_residual = jtu.tree_map(jnp.zeros_like, residual)
    return (root, residual), (t_root, t_residual)


def _nan_if_failed(x, result):
    failed = solve_failed(x, result)
    return jtu.tree_map(lambda a: jnp.where(failed, jnp.nan, a), x)


def _solve(operator: lx.AbstractLinearOperator, vector, solver: lx.AbstractLinearSolver):
    """`operator⁻¹ vector`, linear in `vector` and transposable, with no host callback."""
    state = solver.init(operator, {})

    def solve(matvec, b):
        del matvec
        x, result, _ = solver.compute(state, b, {})
        return _nan_if_failed(x, result)

    def transpose_solve(vecmat, b):
        del vecmat
        transposed, options = solver.transpose(state, {})
        x, result, _ = solver.compute(transposed, b, options)
        return _nan_if_failed(x, result)

    return jax.lax.custom_linear_solve(operator.mv, vector, solve, transpose_solve)
