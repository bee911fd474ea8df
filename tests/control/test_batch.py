"""`control.plan_batch`: on one device, the compiled `jax.vmap(plan)`; on two (forced
host devices, in a fresh process), the same costs and gradients, split over both."""

import re
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from toolkit import control

from ..helpers import finish, free_port, fresh_process, host_callbacks, last_json, tree_allclose


# Without the interior-point fallback the program compiles in about half the time;
# Van der Pol at N = 20 then fails for mu = 6 and 8 (a reason to report).
SOLVER = control.KKTNewton(fallback_after=0)
TRANSCRIPTION = control.Trapezoidal(20)


@pytest.fixture(scope="module")
def vdp():
    return control.problems.get("van_der_pol")


def test_one_device_is_the_vmapped_plan(vdp):
    # Over args and x0 at once; the last two elements fail.
    mus = jnp.concatenate([jnp.linspace(0.5, 1.5, 14), jnp.array([6.0, 8.0])])
    shift = jnp.linspace(-0.2, 0.2, 16)
    x0s = vdp.problem.x0[None] + jnp.stack([shift, jnp.zeros(16)], axis=1)
    batched = control.plan_batch(
        vdp.problem, TRANSCRIPTION, SOLVER, args_batch={"mu": mus}, x0_batch=x0s, throw=False
    )

    def plan(mu, x0):
        problem = eqx.tree_at(lambda p: p.x0, vdp.problem, x0)
        return control.plan(problem, TRANSCRIPTION, SOLVER, args={"mu": mu}, throw=False)

    vmapped = jax.vmap(plan)(mus, x0s)
    assert not isinstance(batched.cost.sharding, jax.sharding.NamedSharding)
    assert tree_allclose(batched, vmapped, rtol=0, atol=1e-12)
    codes = np.asarray(batched.result._value)
    assert np.all(codes[:14] == control.RESULTS.successful._value)
    assert np.all(codes[14:] != control.RESULTS.successful._value)
    # throw=True: the same program, then the first failure's message.
    message = control.RESULTS[jax.tree.map(lambda r: r[14], batched.result)]
    with pytest.raises(eqx.EquinoxRuntimeError, match=re.escape(message[:60])):
        control.plan_batch(vdp.problem, TRANSCRIPTION, SOLVER, args_batch={"mu": mus}, x0_batch=x0s)


def test_chunks_are_the_same_plans(vdp):
    # On a CPU the default runs the batch in chunks of 8 (the test above: 2 chunks);
    # chunks of 3 pad 7 elements to 9. Costs and implicit gradients match one vmap.
    mus = jnp.linspace(0.5, 1.5, 7)

    def total(m, chunk):
        sol = control.plan_batch(
            vdp.problem, TRANSCRIPTION, SOLVER, args_batch={"mu": m}, chunk=chunk
        )
        return jnp.sum(sol.cost), sol

    (_, whole), grad_whole = jax.value_and_grad(total, has_aux=True)(mus, None)
    (_, chunked), grad_chunked = jax.value_and_grad(total, has_aux=True)(mus, 3)
    assert chunked.cost.shape == (7,)
    assert tree_allclose(chunked, whole, rtol=0, atol=1e-12)
    assert tree_allclose(grad_chunked, grad_whole, rtol=0, atol=1e-12)
    assert float(jnp.min(jnp.abs(grad_whole))) > 0  # mu matters to every cost
    with pytest.raises(ValueError, match="`chunk` must be a positive int"):
        control.plan_batch(vdp.problem, TRANSCRIPTION, args_batch={"mu": mus}, chunk=0)


def test_parts_run_side_by_side_and_give_the_same_plans(vdp, monkeypatch):
    # 7 elements in chunks of 3 (3 chunks) over 2 workers: 2 parts of 2 chunks, padded
    # to 12 elements. Each part is the chunked program on its own thread, compiled by
    # the first part alone on the first call.
    import toolkit.control._batch as batch_module

    pools = []

    class Recorded(batch_module.ThreadPoolExecutor):
        def __init__(self, workers):
            pools.append(workers)
            super().__init__(workers)

    monkeypatch.setattr(batch_module, "ThreadPoolExecutor", Recorded)
    mus = jnp.linspace(0.6, 1.4, 7)
    shift = jnp.linspace(-0.1, 0.1, 7)
    x0s = vdp.problem.x0[None] + jnp.stack([shift, jnp.zeros(7)], axis=1)

    def planned(workers):
        return control.plan_batch(
            vdp.problem,
            TRANSCRIPTION,
            SOLVER,
            args_batch={"mu": mus},
            x0_batch=x0s,
            chunk=3,
            workers=workers,
        )

    one = planned(1)
    assert pools == []
    first, again = planned(2), planned(2)
    assert pools == [1, 2]  # compiled by the first part, then both parts at once
    assert first.cost.shape == (7,) and first.stats["num_steps"].shape == (7,)
    assert tree_allclose(first, one, rtol=0, atol=0)
    assert tree_allclose(again, one, rtol=0, atol=0)
    # Inside a transformation the batch is one program, whatever `workers` says.
    grad = jax.grad(lambda m: jnp.sum(planned_cost(vdp, m, 2)))(mus)
    assert pools == [1, 2]
    assert tree_allclose(grad, jax.grad(lambda m: jnp.sum(planned_cost(vdp, m, 1)))(mus))
    with pytest.raises(ValueError, match="`workers` must be a positive int"):
        planned(0)


def planned_cost(vdp, mus, workers):
    sol = control.plan_batch(
        vdp.problem, TRANSCRIPTION, SOLVER, args_batch={"mu": mus}, chunk=3, workers=workers
    )
    return sol.cost


def test_misuse_is_named(vdp):
    with pytest.raises(ValueError, match="element 2: van_der_pol: parameter 'mu'"):
        control.plan_batch(vdp.problem, TRANSCRIPTION, args_batch={"mu": jnp.array([1.0, 2, -1])})
    with pytest.raises(ValueError, match="same leading batch axis"):
        control.plan_batch(
            vdp.problem,
            TRANSCRIPTION,
            args_batch={"mu": jnp.ones(3)},
            x0_batch=jnp.zeros((4, 2)),
        )
    with pytest.raises(ValueError, match="give `args_batch` or `x0_batch`"):
        control.plan_batch(vdp.problem, TRANSCRIPTION)
    mesh = Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="must be 1-D"):
        control.plan_batch(vdp.problem, TRANSCRIPTION, args_batch={"mu": jnp.ones(2)}, mesh=mesh)


_TWO_DEVICES = textwrap.dedent(
    """
    import json

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import toolkit
    from toolkit import control

    toolkit.enable_compilation_cache()
    assert jax.device_count() == 2, jax.devices()
    ex = control.problems.get("van_der_pol")
    solver = control.KKTNewton(fallback_after=0)
    tr = control.Trapezoidal(20)
    mus = jnp.linspace(0.5, 1.5, 16)


    def sharded(m):
        c = control.plan_batch(ex.problem, tr, solver, args_batch={"mu": m}).cost
        return jnp.sum(c), c


    def vmapped(m):
        c = jax.vmap(lambda mu: control.plan(ex.problem, tr, solver, args={"mu": mu}).cost)(m)
        return jnp.sum(c), c


    (_, cost), grad = jax.value_and_grad(sharded, has_aux=True)(mus)
    (_, cost_ref), grad_ref = jax.value_and_grad(vmapped, has_aux=True)(mus)
    print(json.dumps({
        "cost": cost.tolist(),
        "cost_ref": cost_ref.tolist(),
        "grad": grad.tolist(),
        "grad_ref": grad_ref.tolist(),
        "spec": list(cost.sharding.spec),
        "devices": len(cost.sharding.device_set),
        "shards": sorted(
            (s.device.id, s.data.shape[0], s.index[0].start) for s in cost.addressable_shards
        ),
    }))
    """
)


@pytest.fixture(scope="module")
def two_devices() -> dict:
    # JAX reads XLA_FLAGS when it starts: two host devices need a fresh process.
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    ((stdout, _),) = finish([fresh_process(_TWO_DEVICES, env)], timeout=600)
    return last_json(stdout)


def test_two_devices_split_the_batch_and_match_the_vmap(two_devices):
    r = two_devices
    assert r["devices"] == 2 and r["spec"] == ["batch"]
    assert r["shards"] == [[0, 8, 0], [1, 8, 8]]
    np.testing.assert_allclose(r["cost"], r["cost_ref"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(r["grad"], r["grad_ref"], rtol=0, atol=1e-8)
    # The costs vary with mu, so a batch that was not split and put back in order
    # would not pass.
    assert len(set(np.round(r["cost"], 6))) == 16


_PROCESS = textwrap.dedent(
    """
    import json
    import sys

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, process_id = sys.argv[1], int(sys.argv[2])
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    import toolkit
    from toolkit import control

    toolkit.enable_compilation_cache()
    assert jax.device_count() == 2 and jax.local_device_count() == 1
    ex = control.problems.get("van_der_pol")
    solver = control.KKTNewton(fallback_after=0)
    tr = control.Trapezoidal(20)
    mus = jnp.linspace(0.5, 1.5, 16)
    sol = control.plan_batch(ex.problem, tr, solver, args_batch={"mu": mus})
    (shard,) = sol.cost.addressable_shards
    cost = multihost_utils.process_allgather(sol.cost, tiled=True)
    # 15 plans: padded to 16 (the same compiled program), trimmed back.
    odd = control.plan_batch(ex.problem, tr, solver, args_batch={"mu": mus[:15]})
    odd = multihost_utils.process_allgather(odd.cost, tiled=True)
    if process_id == 0:
        print(json.dumps({
            "cost": cost.tolist(),
            "odd": odd.tolist(),
            "local": [shard.index[0].start, shard.index[0].stop],
            "fully_addressable": sol.cost.is_fully_addressable,
        }))
    """
)


def test_two_processes_split_the_batch(two_devices):
    # Two processes on this machine, one CPU device each, joined by
    # jax.distributed (coordinator on localhost, gloo collectives): the batch is split
    # across them, and gives the single process's costs; an odd batch is padded.
    port = free_port()
    processes = [fresh_process(_PROCESS, {"XLA_FLAGS": ""}, port, str(i)) for i in range(2)]
    r = last_json(finish(processes, timeout=600)[0][0])
    assert r["local"] == [0, 8] and not r["fully_addressable"]
    np.testing.assert_allclose(r["cost"], two_devices["cost_ref"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(r["odd"], two_devices["cost_ref"][:15], rtol=0, atol=1e-10)


def test_a_parameter_out_of_range_under_a_users_jit_is_reported_without_throw(vdp):
    # As `plan` does: with `throw=False` the range check's verdict goes into the
    # result, and the user's program holds no host callback.
    def results(mus):
        sol = control.plan_batch(
            vdp.problem, TRANSCRIPTION, SOLVER, args_batch={"mu": mus}, throw=False, chunk=None
        )
        return sol.result

    mus = jnp.array([1.0, -1.0])
    assert host_callbacks(jax.make_jaxpr(results)(mus)) == []
    out = jax.jit(results)(mus)
    assert (out == control.RESULTS.successful).tolist() == [True, False]
    assert (out == control.RESULTS.parameter_out_of_range).tolist() == [False, True]
