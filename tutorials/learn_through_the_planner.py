"""Learn through the planner.

This tutorial is a notebook written as a script. We pretend we do not know the
dynamics of a real system, the Van der Pol oscillator that `toolkit.control`'s
library drives to rest, and learn them from data; then we plan with what we
learned, and train the model *through the planner* so that its plans work on the
real system:

1. data: trajectories of the true system under random smooth controls, from
   scattered initial states, with observation noise;
2. system identification: a neural ODE (an `eqx.nn.MLP` vector field) fitted by
   multiple shooting (fixed RK4 steps), scored on held-out trajectories;
3. learned vs true dynamics: the vector fields and held-out predictions;
4. plan with the learned model (`learning.learned_problem`) and apply the plan to
   the true system: what does it really cost?
5. end-to-end learning: differentiate the true-system cost of the plan through
   `control.plan` (implicit function theorem) and train the model on it, with a
   little of the sysid loss to keep it honest;
6. plots of the plans.

Run it with

    python tutorials/learn_through_the_planner.py --sysid-steps 2000 --e2e-steps 60 --plot learn.png

`tests/control/learning/test_tutorial.py` runs `main(...)` on small settings and
checks the numbers it returns.
"""

import argparse
import time

import jax


# Planning needs float64: the KKT conditions are solved to ~1e-9.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import toolkit  # noqa: E402
from toolkit import control  # noqa: E402
from toolkit.control import learning  # noqa: E402


# %% 1. The true system and its data ----------------------------------------------
#
# x1' = mu (1 - x2²) x1 - x2 + u,  x2' = x1,  u in [-0.3, 1], minimise the integral of
# x1² + x2² + u² over [0, 10]. `ex.problem.dynamics` is the truth we will only use to
# generate data and to score plans.

ex = control.problems.get("van_der_pol")
TRUE_ARGS = ex.args

# Fixed RK4 steps for everything that is differentiated many times: 3 between
# consecutive samples (and between the nodes of a plan's controls), in a `lax.scan`
# that compiles and runs several times faster than a diffrax solve, and a smooth
# function of its inputs. (`learning.Simulator()` is diffrax's adaptive Tsit5.)
RK4 = learning.FixedStepRK4(3)


def make_data(key, n_trajectories, noise_std):
    c_key, x_key, n_key = jr.split(key, 3)
    controls = learning.random_controls(c_key, ex.problem, 20, batch=n_trajectories, kind="smooth")
    x0s = learning.initial_states(x_key, ex.problem, n_trajectories, 0.7)
    ts = jnp.linspace(0.0, 10.0, 41)
    return learning.generate(
        n_key, ex.problem, controls, ts, args=TRUE_ARGS, x0s=x0s, noise_std=noise_std
    )


# %% 2. System identification -------------------------------------------------------
#
# A pure neural ODE: f(x, u) = MLP(x, u), no physics. Multiple shooting (segments of
# one time unit, restarted from the data) keeps the loss benign for an oscillator,
# where single shooting over 10 time units has many local minima. Van der Pol's
# states are of order one, as the MLP likes its inputs and outputs; for a problem
# whose states span orders of magnitude (bacteria, hiv_treatment, timber_harvest),
# pass `scaling=learning.Scaling.from_data(train)`, fixed affine maps around the MLP
# from the training data's means and spreads, as `python -m toolkit learn` does.


def fit_neural_ode(key, train, valid, steps, width):
    field = learning.init_neural_vector_field(key, ex.problem, width_size=width, depth=2)
    model = learning.Model(field)
    loss = learning.MultipleShootingLoss(segment=4, simulator=RK4)
    schedule = optax.cosine_decay_schedule(1e-2, max(steps, 1), alpha=0.05)
    return learning.fit(
        model,
        train,
        loss=loss,
        optimiser=optax.adam(schedule),
        steps=steps,
        valid=valid,
        eval_every=max(steps // 10, 1),
    )


# %% 4.-5. Plan with the model; train it end to end -----------------------------------


def true_cost_of_plan(model, transcription):
    """Plan with `model` and return (the plan, its cost on the true system)."""
    loss = learning.TrueCost(ex.problem, TRUE_ARGS, RK4)
    value, sol = learning.plan_loss(model, ex.problem, transcription, loss, args=TRUE_ARGS)
    return sol, float(value), bool(sol.result == control.RESULTS.successful)


def main(
    N=20,
    n_trajectories=24,
    noise_std=1e-3,
    sysid_steps=2000,
    e2e_steps=60,
    width=32,
    seed=0,
    plot=None,
):
    """Run the tutorial; return its numbers in a dict (the tests check them).

    **Arguments:**

    - `N`: intervals of the trapezoidal transcription used to plan.
    - `n_trajectories`: trajectories of data (a quarter is held out).
    - `noise_std`: observation noise.
    - `sysid_steps`: Adam steps of system identification.
    - `e2e_steps`: Adam steps of end-to-end training.
    - `width`: the MLP's hidden width.
    - `seed`: the random seed.
    - `plot`: a path to save the figure to, or `None` for no plot.
    """
    out = {}
    key = jr.key(seed)
    d_key, m_key = jr.split(key)
    transcription = control.Trapezoidal(N)

    # 1. Data.
    data = make_data(d_key, n_trajectories, noise_std)
    train, valid = learning.split(data, n_trajectories - max(n_trajectories // 4, 1))
    print(f"data: {train.size} training and {valid.size} held-out trajectories")

    # 2. System identification.
    t = time.perf_counter()
    model, history = fit_neural_ode(m_key, train, valid, sysid_steps, width)
    print(
        f"sysid: {sysid_steps} Adam steps in {time.perf_counter() - t:.0f} s, held-out "
        f"multiple-shooting loss {history['valid'][0]:.2e} -> {history['valid'][-1]:.2e}"
    )
    out["sysid_valid"] = history["valid"]
    truth = learning.Model(ex.problem.dynamics, TRUE_ARGS)
    whole = learning.SingleShootingLoss(simulator=RK4)
    out["valid_single_shooting"] = float(whole(model, valid))
    print(
        f"       held-out whole-horizon (single-shooting) loss {out['valid_single_shooting']:.2e}"
    )

    # 3. Learned vs true vector field on a grid of states (u = 0).
    g = jnp.linspace(-2.0, 2.0, 15)
    X1, X2 = jnp.meshgrid(g, g)
    states = jnp.stack([X1.ravel(), X2.ravel()], axis=1)
    u0 = jnp.zeros((1,))
    f_true = jax.vmap(lambda x: truth(0.0, x, u0))(states)
    f_model = jax.vmap(lambda x: model(0.0, x, u0))(states)
    out["field_error"] = float(jnp.sqrt(jnp.mean((f_model - f_true) ** 2)))
    out["field_scale"] = float(jnp.sqrt(jnp.mean(f_true**2)))
    print(
        f"vector field on [-2, 2]²: RMS error {out['field_error']:.3f} "
        f"(RMS of the true field {out['field_scale']:.3f})"
    )

    # 4. Plan with the truth and with the learned model; score both on the truth.
    sol_true, cost_true, ok = true_cost_of_plan(truth, transcription)
    assert ok
    sol_sysid, cost_sysid, ok_sysid = true_cost_of_plan(model, transcription)
    out["true_model_cost"] = cost_true
    out["sysid_cost"] = cost_sysid
    out["sysid_plan_ok"] = ok_sysid
    print(
        f"\nplans on Trapezoidal({N}), scored on the true system:\n"
        f"  with the true model:    {cost_true:.4f}  (the planner predicted "
        f"{float(sol_true.cost):.4f})\n"
        f"  with the neural ODE:    {cost_sysid:.4f}"
    )

    # 5. End to end: minimise the true-system cost of the plan, keeping a little of the
    # sysid loss. The gradient flows through control.plan by the implicit function
    # theorem: one linear solve with the KKT Jacobian per step.
    t = time.perf_counter()
    e2e_model, e2e_history = learning.fit_end_to_end(
        model,
        ex.problem,
        transcription,
        learning.TrueCost(ex.problem, TRUE_ARGS, RK4),
        args=TRUE_ARGS,
        optimiser=optax.adam(1e-3),
        steps=e2e_steps,
        data=train,
        sysid_loss=learning.MultipleShootingLoss(segment=4, simulator=RK4),
        sysid_weight=10.0,
        keep_best=True,
    )
    sol_e2e, cost_e2e, ok_e2e = true_cost_of_plan(e2e_model, transcription)
    out["e2e_history"] = e2e_history["loss"]
    print("  true-system cost along end-to-end training:", np.round(e2e_history["loss"], 3))
    out["e2e_cost"] = cost_e2e
    out["e2e_plan_ok"] = ok_e2e
    out["e2e_failed"] = e2e_history["failed"]
    print(f"  after {e2e_steps} end-to-end steps ({time.perf_counter() - t:.0f} s): {cost_e2e:.4f}")
    # Decision-focused learning can even beat the true model: at N = 20 the
    # trapezoidal plan of the truth is not optimal for the truth; the end-to-end model
    # learns to compensate for the discretisation.

    if plot is not None:
        out["plot"] = str(
            _plot(plot, states, f_true, f_model, valid, model, sol_true, sol_sysid, sol_e2e)
        )
    return out


def _plot(path, states, f_true, f_model, valid, model, sol_true, sol_sysid, sol_e2e):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    ax = axes[0, 0]
    s = np.asarray(states)
    ax.quiver(s[:, 0], s[:, 1], *np.asarray(f_true).T, color="k", alpha=0.6, label="true")
    ax.quiver(s[:, 0], s[:, 1], *np.asarray(f_model).T, color="C1", alpha=0.6, label="learned")
    ax.set(title="vector field at u = 0", xlabel="x1", ylabel="x2")
    ax.legend()

    ax = axes[0, 1]
    for i in range(min(valid.size, 3)):
        one = jax.tree_util.tree_map(lambda a: a[i], valid)
        pred = learning.simulate(
            model.dynamics, one.x0s, one.controls, one.ts, args=model.args, simulator=RK4
        )
        ax.plot(one.ts, one.xs[:, 1], ".", color=f"C{i}", ms=4)
        ax.plot(one.ts, pred[:, 1], "-", color=f"C{i}")
    ax.set(title="held-out trajectories: data (dots), neural ODE (lines)", xlabel="t", ylabel="x2")

    for ax, k, name in (
        (axes[1, 0], None, "state x2 on the true system"),
        (axes[1, 1], 0, "planned control u"),
    ):
        for sol, label, c in (
            (sol_true, "true model", "k"),
            (sol_sysid, "neural ODE", "C1"),
            (sol_e2e, "end to end", "C2"),
        ):
            if k is None:
                xs = learning.simulate(
                    ex.problem.dynamics,
                    ex.problem.x0,
                    learning.Controls.from_solution(sol),
                    sol.ts,
                    args=TRUE_ARGS,
                    simulator=RK4,
                )
                ax.plot(sol.ts, xs[:, 1], color=c, label=label)
            else:
                ax.plot(sol.ts, sol.us[:, 0], color=c, label=label)
        ax.set(title=name, xlabel="t")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    toolkit.enable_compilation_cache()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--N", type=int, default=20)
    parser.add_argument("--trajectories", type=int, default=24)
    parser.add_argument("--noise", type=float, default=1e-3)
    parser.add_argument("--sysid-steps", type=int, default=2000)
    parser.add_argument("--e2e-steps", type=int, default=60)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None)
    ns = parser.parse_args()
    main(
        N=ns.N,
        n_trajectories=ns.trajectories,
        noise_std=ns.noise,
        sysid_steps=ns.sysid_steps,
        e2e_steps=ns.e2e_steps,
        width=ns.width,
        seed=ns.seed,
        plot=ns.plot,
    )
