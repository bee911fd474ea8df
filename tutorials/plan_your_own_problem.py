"""Plan your own optimal control problem.

This tutorial is a notebook written as a script. We define a problem of our own,
plan it with `toolkit.control`, and check every number the planner gives us
against an independent truth:

1. the problem: a scalar linear-quadratic regulator, whose optimum follows in
   closed form from the scalar Riccati equation;
2. plan it, and watch the discretised optimum converge to the analytic one at the
   second-order rate of the trapezoidal rule;
3. read the Pontryagin costates off the solution and compare them with the
   analytic costate p(t) = 2 P(t) x(t);
4. differentiate the optimal cost with respect to the problem's parameters
   (implicit differentiation, no unrolling) and check against finite differences;
5. `jax.vmap` the planner over a batch of parameters and check against a loop;
6. bound the control so that the bound becomes active, and read the bound
   multipliers, again against an analytic solution;
7. draw a plot.

Run it with

    python tutorials/plan_your_own_problem.py --N 100 --Ns 25 50 100 200 --plot lqr.png

`tests/test_tutorials.py` runs `main(...)` on small settings and checks the numbers
it returns.
"""

import argparse
import math

import jax


# Optimal control needs float64: the KKT conditions are solved to ~1e-9 and finite
# differences below would drown in float32 round-off.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import toolkit  # noqa: E402
from toolkit import control  # noqa: E402


# %% 1. The problem ------------------------------------------------------------------
#
# A scalar state x and a scalar control u on [0, t1]:
#
#     minimise    ∫_0^t1  q x(t)² + r u(t)²  dt
#     subject to  x' = a x + b u,   x(0) = 1.
#
# Everything we may want to differentiate or batch over (a, b, q, r) goes in `args`:
# the problem's functions receive it and never close over numbers. Functions take
# `(t, x, u, args)` with x of shape (nx,) = (1,) and u of shape (nu,) = (1,); the
# dynamics return shape (nx,), the running cost a scalar.

T1 = 1.0
X0 = 1.0
PARAMS = dict(a=-0.5, b=1.0, q=1.0, r=1.0)
# A bound on the control that the unbounded optimum (u(0) ≈ -0.53) violates.
U_LOWER = -0.3


def dynamics(t, x, u, args):
    return args["a"] * x + args["b"] * u


def running_cost(t, x, u, args):
    return args["q"] * x[0] ** 2 + args["r"] * u[0] ** 2


def make_problem(u_lo=-math.inf, u_hi=math.inf):
    # nu is read from u_bounds: one control, unbounded by default.
    return control.OptimalControlProblem(
        dynamics=dynamics,
        running_cost=running_cost,
        x0=jnp.array([X0]),
        t1=T1,
        u_bounds=(jnp.array([u_lo]), jnp.array([u_hi])),
    )


def as_args(params):
    # 0-d float64 arrays: differentiable, and batchable by jax.vmap.
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}


# %% 2. The analytic solution ---------------------------------------------------------
#
# With value function V(t, x) = P(t) x², the Hamilton–Jacobi–Bellman equation gives
# the scalar Riccati equation
#
#     -P' = q + 2 a P - (b²/r) P²,   P(t1) = 0,
#
# the feedback u = -(b/r) P x, and the optimal cost J* = P(0) x0². With
# γ = sqrt(a² + b² q / r), τ = t1 - t and D(τ) = γ cosh(γτ) - a sinh(γτ):
#
#     P(t) = q sinh(γτ) / D(τ),        x(t) = x0 D(τ) / D(t1),
#     p(t) = ∂V/∂x = 2 P(t) x(t) = 2 q x0 sinh(γτ) / D(t1).
#
# p is the Pontryagin costate for the Hamiltonian H = L + p·f, which is the
# convention `Solution.costates` documents (toolkit/control/_solution.py).


def _gamma_D(tau, args):
    a, b, q, r = args["a"], args["b"], args["q"], args["r"]
    gamma = jnp.sqrt(a**2 + b**2 * q / r)
    return gamma, gamma * jnp.cosh(gamma * tau) - a * jnp.sinh(gamma * tau)


def riccati_P(t, args, t1=T1):
    gamma, D = _gamma_D(t1 - t, args)
    return args["q"] * jnp.sinh(gamma * (t1 - t)) / D


def analytic_state(t, args, x0=X0, t1=T1):
    _, D = _gamma_D(t1 - t, args)
    _, D1 = _gamma_D(t1, args)
    return x0 * D / D1


def analytic_costate(t, args):
    return 2 * riccati_P(t, args) * analytic_state(t, args)


def analytic_cost(args, x0=X0):
    return riccati_P(0.0, args) * x0**2


# %% 3. Plan it ----------------------------------------------------------------------


def plan_cost(args, N, problem=None):
    """The optimal cost of the trapezoidal NLP with N intervals, a function of args."""
    problem = make_problem() if problem is None else problem
    return control.plan(problem, control.Trapezoidal(N), control.KKTNewton(), args=args).cost


def main(N=100, Ns=(25, 50, 100, 200), batch=8, plot=None):
    """Run the tutorial; return its numbers in a dict (the tests check them).

    **Arguments:**

    - `N`: intervals for the costate, gradient, vmap and bounded sections.
    - `Ns`: the grid sizes of the convergence table (increasing, each twice the last
        for the rate to read as an order).
    - `batch`: how many parameter values to vmap over.
    - `plot`: a path to save the figure to, or `None` for no plot.
    """
    out = {}
    args = as_args(PARAMS)
    problem = make_problem()
    J_star = float(analytic_cost(args))
    print("Scalar LQR, " + ", ".join(f"{k}={v}" for k, v in PARAMS.items()))
    print(f"analytic optimal cost J* = P(0) x0² = {J_star:.12f}")

    sol = control.plan(problem, control.Trapezoidal(N), control.KKTNewton(), args=args)
    print(
        f"\nTrapezoidal({N}) + KKTNewton: cost {float(sol.cost):.12f}, "
        f"{int(sol.stats['num_steps'])} Newton step(s), "
        f"KKT residual {float(sol.stats['kkt_residual']):.1e}, "
        f"result {control.RESULTS[sol.result] or 'converged'!r}"
    )
    # An unbounded LQ problem has linear KKT conditions: one Newton step solves them.
    out["num_steps"] = int(sol.stats["num_steps"])
    out["converged"] = bool(sol.result == control.RESULTS.successful)

    # %% Convergence. The trapezoidal rule is second-order: doubling N should divide
    # the error by ~4, i.e. an observed order log2(e_N / e_2N) ≈ 2.
    print(f"\n{'N':>6} {'cost':>16} {'cost - J*':>12} {'order':>6}")
    errors = []
    for n in Ns:
        err = float(plan_cost(args, n, problem)) - J_star
        order = "" if not errors else f"{math.log2(errors[-1] / err):6.3f}"
        errors.append(err)
        print(f"{n:>6} {J_star + err:16.12f} {err:12.3e} {order:>6}")
    out["Ns"] = list(Ns)
    out["cost_errors"] = errors
    out["orders"] = [math.log2(e0 / e1) for e0, e1 in zip(errors[:-1], errors[1:])]
    # Hermite–Simpson is fourth-order: at the largest N it is far closer still.
    hs = control.plan(problem, control.HermiteSimpson(Ns[-1]), args=args)
    out["hermite_simpson_error"] = float(hs.cost) - J_star
    print(f"HermiteSimpson({Ns[-1]}): cost - J* = {out['hermite_simpson_error']:.3e}")

    # %% States and costates. `sol.costates[k]` approximates p at the midpoint of
    # interval k (it is minus the multiplier of the k-th defect); compare with the
    # analytic p(t) = 2 P(t) x(t) there, and the states with x(t) at the nodes.
    mid = 0.5 * (sol.ts[1:] + sol.ts[:-1])
    p_exact = analytic_costate(mid, args)
    out["costate_error"] = float(jnp.max(jnp.abs(sol.costates[:, 0] - p_exact)))
    out["state_error"] = float(jnp.max(jnp.abs(sol.xs[:, 0] - analytic_state(sol.ts, args))))
    print(f"\nmax |x_k - x(t_k)|               = {out['state_error']:.3e}")
    print(f"max |costate_k - 2 P x (t_k+½)|  = {out['costate_error']:.3e}")

    # %% Gradients. `control.plan` is an implicit layer: jax.grad differentiates the
    # KKT conditions (implicit function theorem, one linear solve), never the Newton
    # iterations. Check against central differences of the same discretised cost, and
    # against the derivative of the analytic J* (which it matches up to O(h²)).
    grad = jax.grad(plan_cost)(args, N)
    eps = 1e-4
    fd = {
        k: (
            float(plan_cost({**args, k: args[k] + eps}, N))
            - float(plan_cost({**args, k: args[k] - eps}, N))
        )
        / (2 * eps)
        for k in args
    }
    grad_exact = jax.grad(analytic_cost)(args)
    print(
        f"\n{'dJ/d':>5} {'implicit (IFT)':>16} {'central FD':>16} {'rel. diff':>10} "
        f"{'analytic dJ*':>14}"
    )
    rel = {}
    for k in args:
        g = float(grad[k])
        rel[k] = abs(g - fd[k]) / max(abs(fd[k]), 1e-12)
        exact_k = float(grad_exact[k])
        print(f"{k:>5} {g:16.10f} {fd[k]:16.10f} {rel[k]:10.1e} {exact_k:14.8f}")
    out["grad"] = {k: float(v) for k, v in grad.items()}
    out["grad_fd"] = fd
    out["grad_rel_error"] = rel
    out["grad_analytic"] = {k: float(v) for k, v in grad_exact.items()}

    # %% Batching. vmap the whole planner over `batch` values of a; each solve is
    # independent, so the batched costs equal separate solves.
    a_values = jnp.linspace(-1.0, 1.0, batch, dtype=jnp.float64)
    batched = jax.vmap(lambda a: plan_cost({**args, "a": a}, N))(a_values)
    looped = jnp.stack([plan_cost({**args, "a": a}, N) for a in a_values])
    exact = jax.vmap(lambda a: analytic_cost({**args, "a": a}))(a_values)
    print(f"\n{'a':>7} {'vmap cost':>14} {'loop cost':>14} {'analytic J*':>14}")
    for a, c, lp, e in zip(a_values, batched, looped, exact):
        print(f"{float(a):7.3f} {float(c):14.10f} {float(lp):14.10f} {float(e):14.10f}")
    out["vmap_loop_diff"] = float(jnp.max(jnp.abs(batched - looped)))
    out["vmap_analytic_diff"] = float(jnp.max(jnp.abs(batched - exact)))
    print(f"max |vmap - loop| = {out['vmap_loop_diff']:.1e}")

    # %% A bounded control. Impose u ≥ U_LOWER. The unbounded optimum starts at
    # u(0) ≈ -0.53, so the bound is active on an initial arc [0, τ], after which the
    # Riccati feedback takes over. The bounded problem has the same functions: only
    # the bound arrays change, so the jitted planner is reused.
    box = make_problem(u_lo=U_LOWER)
    bsol = control.plan(box, control.Trapezoidal(N), control.KKTNewton(), args=args)
    tau, J_box = analytic_bounded(args, U_LOWER)
    out["bounded_cost_error"] = float(bsol.cost) - J_box
    out["bounded_converged"] = bool(bsol.result == control.RESULTS.successful)
    print(
        f"\nBounded u ≥ {U_LOWER}: cost {float(bsol.cost):.10f} "
        f"(analytic {J_box:.10f}, switch at τ = {tau:.6f}), "
        f"{int(bsol.stats['num_steps'])} Newton steps"
    )
    # `bound_multipliers` has the layout of the NLP unknowns: for Trapezoidal, each
    # node holds [x_k, u_k], so the control multipliers are the last nu columns. They
    # are ν = ∂(J + λ·c)/∂u_k: positive at an active lower bound, 0 where u is free.
    # Divided by the quadrature weight w_k (h, or h/2 at the ends) they approximate
    # ∂H/∂u = 2 r u + b p, the price of the bound per unit time.
    nx = box.nx
    nu_mult = bsol.bound_multipliers[:, nx:][:, 0]
    us = bsol.us[:, 0]
    h = T1 / N
    weights = jnp.full((N + 1,), h, dtype=jnp.float64).at[0].set(h / 2).at[-1].set(h / 2)
    active = np.asarray(jnp.abs(us - U_LOWER) <= 1e-9)
    # The discrete minimum principle: with p_k the node costates (the average of the
    # costates on both sides), u_k = clip(-b p_k / 2r, lo, hi) exactly.
    c = bsol.costates[:, 0]
    p_nodes = jnp.concatenate([c[:1], 0.5 * (c[1:] + c[:-1]), c[-1:]])
    u_pmp = jnp.clip(-args["b"] * p_nodes / (2 * args["r"]), U_LOWER, math.inf)
    out["pmp_error"] = float(jnp.max(jnp.abs(us - u_pmp)))
    out["active_nodes"] = int(active.sum())
    out["multipliers_active_min"] = float(jnp.min(nu_mult[active]))
    out["multipliers_free_max"] = float(jnp.max(jnp.abs(nu_mult[~active])))
    out["last_active_time"] = float(bsol.ts[np.flatnonzero(active)[-1]])
    out["switch_time"] = tau
    out["h"] = h
    print(f"{'t_k':>7} {'u_k':>10} {'ν_k':>11} {'ν_k / w_k':>10}")
    last = int(np.flatnonzero(active)[-1])
    for k in sorted({0, 1, last // 2, last, last + 1, last + 2, N}):
        print(
            f"{float(bsol.ts[k]):7.3f} {float(us[k]):10.6f} {float(nu_mult[k]):11.3e} "
            f"{float(nu_mult[k] / weights[k]):10.5f}" + ("  active" if active[k] else "")
        )
    print(
        f"{out['active_nodes']} active nodes, last at t = "
        f"{out['last_active_time']:.4f} (τ = {tau:.4f}); "
        f"min ν on the active set {out['multipliers_active_min']:.2e}, "
        f"max |ν| off it {out['multipliers_free_max']:.1e}; "
        f"max |u - clip(-b p / 2r)| = {out['pmp_error']:.1e}"
    )

    # %% A plot. `plot_solution` draws states, controls and costates; we overlay the
    # analytic unbounded solution and the bounded plan on its axes.
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = control.plot_solution(sol, title=f"Scalar LQR, Trapezoidal({N})")
        fine = jnp.linspace(0.0, T1, 200, dtype=jnp.float64)
        x_a, p_a = analytic_state(fine, args), analytic_costate(fine, args)
        u_a = -args["b"] * p_a / (2 * args["r"])
        bmid = np.asarray(0.5 * (bsol.ts[1:] + bsol.ts[:-1]))
        bounded = (bsol.xs, bsol.us, bsol.costates)
        for ax, y, yb in zip(fig.axes, (x_a, u_a, p_a), bounded):
            ax.lines[0].set_label("plan")
            ax.plot(np.asarray(fine), np.asarray(y), "k--", lw=1, label="analytic")
            t_b = bmid if yb.shape[0] == N else np.asarray(bsol.ts)
            ax.plot(t_b, np.asarray(yb), label=f"plan, u ≥ {U_LOWER}")
        fig.axes[1].axhline(U_LOWER, color="grey", lw=0.5)
        for ax in fig.axes:
            ax.legend(fontsize=7)
        fig.savefig(plot, dpi=120)
        plt.close(fig)
        print(f"\nwrote {plot}")
        out["plot"] = str(plot)
    return out


# %% The bounded problem, analytically ------------------------------------------------
#
# On [0, τ] the bound holds, u = lo, and x' = a x + b lo gives
# x(t) = A e^{at} + B with B = -b lo / a, A = x0 - B. From τ on the bound is
# inactive: the remaining problem is the unbounded one on [τ, t1], solved by the
# Riccati feedback, costing P(τ) x(τ)². The control is continuous, so the switching
# time τ solves -(b/r) P(τ) x(τ) = lo, found here by bisection.


def analytic_bounded(args, lo, x0=X0, t1=T1):
    a, b, q, r = (float(args[k]) for k in ("a", "b", "q", "r"))
    B = -b * lo / a
    A = x0 - B

    def x_arc(t):
        return A * math.exp(a * t) + B

    def P(t):
        return float(riccati_P(jnp.float64(t), args, t1))

    def switch(t):  # u after switching minus the bound: < 0 while the bound binds
        return -(b / r) * P(t) * x_arc(t) - lo

    left, right = 0.0, t1
    if switch(left) >= 0:
        raise ValueError("the bound is not active at t = 0: pick a tighter one.")
    for _ in range(200):
        tau = 0.5 * (left + right)
        left, right = (tau, right) if switch(tau) < 0 else (left, tau)
    tau = 0.5 * (left + right)
    integral_x2 = (
        A**2 * math.expm1(2 * a * tau) / (2 * a) + 2 * A * B * math.expm1(a * tau) / a + B**2 * tau
    )
    cost = q * integral_x2 + r * lo**2 * tau + P(tau) * x_arc(tau) ** 2
    return tau, cost


if __name__ == "__main__":
    toolkit.enable_compilation_cache()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=100, help="intervals of the main plan")
    parser.add_argument(
        "--Ns",
        type=int,
        nargs="+",
        default=[25, 50, 100, 200],
        help="convergence table grid",
    )
    parser.add_argument("--batch", type=int, default=8, help="parameter values to vmap over")
    parser.add_argument("--plot", default=None, help="save the figure to this path")
    cli = parser.parse_args()
    main(N=cli.N, Ns=tuple(cli.Ns), batch=cli.batch, plot=cli.plot)
