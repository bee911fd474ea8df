import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import control
from toolkit.control import learning


@pytest.mark.slow  # compiles a plan inside a scan inside a vmap (~40 s unloaded)
def test_mpc_keeps_a_perturbed_system_near_the_plan():
    ex = control.problems.get("van_der_pol")
    tr = control.Trapezoidal(40)
    # Plan with a model (here the nominal parametric one, as a learned problem).
    model = learning.Model(ex.problem.dynamics, {"mu": jnp.array(1.0)})
    problem = learning.learned_problem(ex.problem, model)
    nominal = control.plan(problem, tr, args=ex.args)
    h = float(ex.problem.t1) / tr.N

    # Scenarios: the nominal plant without noise, then plants whose damping differs
    # from the model's, with process noise.
    mus = jnp.array([1.0, 1.0, 1.3, 1.3, 0.7])
    noise = jnp.array([0.0, 0.05, 0.02, 0.02, 0.02])
    keys = jr.split(jr.key(0), 5)

    def closed(key, mu, std):
        return learning.mpc(
            ex.problem,
            problem,
            tr,
            steps=tr.N,
            args=ex.args,
            plant_args={"mu": mu},
            init=nominal,
            key=key,
            process_noise=std,
        )

    def opened(key, mu, std):
        return learning.open_loop(
            ex.problem,
            learning.Controls.from_solution(nominal),
            steps=tr.N,
            dt=h,
            plant_args={"mu": mu},
            key=key,
            process_noise=std,
        )

    cl = jax.vmap(closed)(keys, mus, noise)
    ol = jax.vmap(opened)(keys, mus, noise)
    assert cl.xs.shape == (5, tr.N + 1, 2) and cl.us.shape == (5, tr.N + 1, 1)
    assert np.allclose(cl.ts[0], nominal.ts)
    assert bool(jnp.all(cl.successful))
    # Warm starts: after the first step, a handful of Newton steps suffice.
    assert float(jnp.median(cl.num_steps[:, 1:])) <= 6
    lo, hi = ex.problem.u_bounds
    assert float(cl.us.min()) >= float(lo[0]) and float(cl.us.max()) <= float(hi[0])

    dev_cl = np.asarray(jnp.max(jnp.abs(cl.xs - nominal.xs[None]), axis=(1, 2)))
    dev_ol = np.asarray(jnp.max(jnp.abs(ol.xs - nominal.xs[None]), axis=(1, 2)))
    # Unperturbed, MPC follows its own plan up to the discretisation error of N = 40
    # (open loop drifts by more: the oscillator is unstable).
    assert dev_cl[0] < 0.05, dev_cl
    # Perturbed, it stays near the plan where the open-loop plan drifts far away...
    assert np.all(dev_cl[1:] < 0.5), dev_cl
    assert np.all(dev_cl[1:] < 0.25 * dev_ol[1:]), (dev_cl, dev_ol)
    # ...and costs far less on the true system.
    assert np.all(np.asarray(cl.cost)[1:] < 0.5 * np.asarray(ol.cost)[1:]), (cl.cost, ol.cost)
