"""Data-parallel training over a mesh: two host devices in a fresh process, and two
processes joined by jax.distributed, each against the one-device run."""

import json
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from toolkit import data, nn, pruning

from ..helpers import finish, free_port, fresh_command, fresh_process, last_json


# DemP on digits, float64, so that the runs on one and two devices differ only by the
# order of floating-point sums (in float32 those differences grow over a few hundred
# noisy steps until a prune differs by a unit).
_RUN = textwrap.dedent(
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import optax

    import toolkit
    from toolkit import data, nn, pruning

    # As the suite's own process: the programs this script compiles come from, and go
    # to, the persistent cache (a configuration, so before `jax.distributed` starts).
    toolkit.enable_compilation_cache()


    def run(mesh, method=None, **kwargs):
        model, state = eqx.nn.make_with_state(nn.MLP)(
            64, 10, (64, 64), batch_norm=True, key=jr.key(0, impl="rbg"), dtype=jnp.float64
        )
        if method is None:
            method = pruning.DemP(reg=0.3, noise=5e-3, prune_every=50)
        settings = dict(
            optimiser=optax.adamw(5e-3, weight_decay=5e-4), steps=300, batch_size=64,
            key=jr.key(1, impl="rbg"), eval_every=100, progress=False, mesh=mesh,
        )
        model, state, history = pruning.train(
            model, state, data.load("digits"), method, **{**settings, **kwargs}
        )
        leaf = jax.tree.leaves(eqx.filter(model, eqx.is_array))[0]
        return {
            "prunes": history["prunes"],
            "accuracy": [e["test_accuracy"] for e in history["evaluations"]],
            "loss": [e["train_loss"] for e in history["evaluations"]],
            "mesh": history["mesh"],
            "widths": pruning.widths(model),
            "replicated": leaf.sharding.is_fully_replicated,
            "devices": len(leaf.sharding.device_set),
        }
    """
)

_TWO_DEVICES = _RUN + textwrap.dedent(
    """
    import json

    import numpy as np
    from jax.sharding import Mesh

    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 2, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    # The two-device run is preempted at step 250 and resumed; its checkpoint at step
    # 250 is kept for the two-process test, which resumes it on another topology.
    import shutil
    import sys

    folder = sys.argv[1]
    checkpoint = f"{folder}/two.ckpt"
    run(mesh, checkpoint=checkpoint, stop_at=250)
    shutil.copy(checkpoint, f"{folder}/at250.ckpt")
    out = {"one": run(None), "two": run(mesh, checkpoint=checkpoint)}
    # Two CPU devices of one process share XLA's thread pool: the steps run one at a time.
    out["one_at_a_time"] = pruning.DataParallel(mesh).one_launch_at_a_time
    # A baseline whose saliencies are gradients over the (split) batch: SNAP's global
    # ranking in rounds, at initialisation.
    snap = pruning.SNAP(sparsity=0.6)
    out["snap_one"], out["snap_two"] = run(None, snap, steps=100), run(mesh, snap, steps=100)
    try:
        run(mesh, batch_size=63)
    except ValueError as e:
        out["error"] = str(e)
    # The command line trains on every device by default, and says so in its log.
    import tempfile

    from toolkit._cli import main

    with tempfile.TemporaryDirectory() as tmp:
        log = f"{tmp}/log.json"
        argv = ["train", "--dataset", "digits", "--widths", "16", "--steps", "10"]
        argv += ["--batch-size", "64", "--no-progress", "--json", log, "--plot", ""]
        with jax.numpy_dtype_promotion("standard"):
            assert main(argv) == 0
        out["cli_mesh"] = json.load(open(log))["mesh"]
        try:
            main([*argv, "--batch-size", "63"])
        except SystemExit as e:
            out["cli_status"] = e.code
    print(json.dumps(out))
    """
)

_PROCESS = textwrap.dedent(
    """
    import json
    import os
    import sys

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, process_id, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    import numpy as np
    from jax.sharding import Mesh

    assert jax.device_count() == 2 and jax.local_device_count() == 1
    mesh = Mesh(np.array(jax.devices()), ("data",))
    checkpoint = os.path.join(folder, "run.ckpt")
    log = os.path.join(folder, f"log{process_id}.json")
    # The checkpoint one process with two devices wrote at step 250, resumed by both.
    resumed = run(mesh, checkpoint=checkpoint, log=log)
    print(json.dumps({"resumed": resumed}))
    """
)


def _same_run(a: dict, b: dict) -> None:
    assert a["prunes"] == b["prunes"] and a["widths"] == b["widths"]
    np.testing.assert_allclose(a["accuracy"], b["accuracy"], rtol=0, atol=1e-12)
    # The sums over the batch run in another order on two devices: after 300 noisy
    # float64 steps the losses differ from the 10th digit on.
    np.testing.assert_allclose(a["loss"][1:], b["loss"][1:], rtol=1e-8)


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> dict:
    # JAX reads XLA_FLAGS when it starts: two host devices need a fresh process.
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    folder = tmp_path_factory.mktemp("two_devices")
    ((stdout, stderr),) = finish([fresh_process(_TWO_DEVICES, env, str(folder))], timeout=900)
    assert "resuming from step 250" in stderr
    return {**last_json(stdout), "checkpoint_at_250": folder / "at250.ckpt"}


def test_two_devices_train_as_one(two_devices):
    one, two = two_devices["one"], two_devices["two"]
    # The run prunes (so the check covers the dead-unit statistics, reduced across
    # the devices) and learns.
    assert len(one["prunes"]) >= 2 and one["accuracy"][-1] > 0.8
    _same_run(one, two)
    assert one["mesh"] is None and two["mesh"] == {
        "axis": "data",
        "devices": 2,
        "processes": 1,
        "platform": "cpu",
    }
    assert two["replicated"] and two["devices"] == 2 and two_devices["one_at_a_time"]
    # Every method decides on the global batch: SNAP's prune, uneven across the layers.
    snap_one, snap_two = two_devices["snap_one"], two_devices["snap_two"]
    assert len(snap_one["prunes"]) == 1
    assert snap_one["widths"] != {"hidden.0": 26, "hidden.1": 26}  # global, not 60 % each
    _same_run(snap_one, snap_two)
    assert not one["replicated"] or one["devices"] == 1
    assert "not a multiple of the 2 devices" in two_devices["error"]
    assert two_devices["cli_mesh"]["devices"] == 2 and two_devices["cli_status"] == 2


def test_two_processes_train_as_one(two_devices, tmp_path):
    # Two processes on this machine, one CPU device each, joined by jax.distributed
    # (coordinator on localhost, gloo collectives): each batch is split across them,
    # only process 0 writes, and the checkpoint one process with two devices wrote at
    # step 250 resumes in both processes to the one-device run's result.
    port = free_port()
    at_250 = two_devices["checkpoint_at_250"].read_bytes()
    (tmp_path / "run.ckpt").write_bytes(at_250)
    code = _RUN + _PROCESS
    processes = [
        fresh_process(code, {"XLA_FLAGS": ""}, port, str(i), str(tmp_path)) for i in range(2)
    ]
    outputs = finish(processes, timeout=900)
    one = two_devices["one"]
    for stdout, _ in outputs:
        r = last_json(stdout)
        assert r["resumed"]["mesh"]["processes"] == 2
        _same_run(one, r["resumed"])
    # Process 0 wrote the finished run's checkpoint and log, process 1 neither.
    assert (tmp_path / "run.ckpt").read_bytes() != at_250 and (tmp_path / "log0.json").exists()
    assert not (tmp_path / "log1.json").exists()
    assert "resuming from step 250" in outputs[0][1]
    assert "resuming" not in outputs[1][1]


def test_a_mesh_of_one_device_is_the_plain_run():
    ds = data.load("digits")
    model, state = eqx.nn.make_with_state(nn.MLP)(
        64, 10, (16,), batch_norm=True, key=jr.key(0, impl="rbg"), dtype=jnp.float32
    )
    kwargs = dict(
        optimiser=optax.adamw(5e-3),
        steps=40,
        batch_size=32,
        key=jr.key(1, impl="rbg"),
        eval_every=20,
        progress=False,
    )
    method = pruning.DemP(reg=0.3, prune_every=20)
    with jax.numpy_dtype_promotion("standard"):  # optax's schedules mix int and float
        plain = pruning.train(model, state, ds, method, **kwargs)
        mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
        meshed = pruning.train(model, state, ds, method, mesh=mesh, **kwargs)
    for a, b in zip(jax.tree.leaves(plain[:2]), jax.tree.leaves(meshed[:2])):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert meshed[2]["mesh"]["devices"] == 1 and plain[2]["mesh"] is None
    assert not pruning.DataParallel(mesh).one_launch_at_a_time
    with pytest.raises(ValueError, match="1-D jax.sharding.Mesh"):
        pruning.train(
            model,
            state,
            ds,
            method,
            mesh=Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("a", "b")),
            **kwargs,
        )


def test_the_command_line_runs_as_two_processes(tmp_path):
    # One command per process, as on a cluster: `--coordinator`, `--num-processes`,
    # `--process-id`; the run spans both processes' devices and process 0 writes.
    port = free_port()
    log = tmp_path / "log.json"
    argv = ["-m", "toolkit", "train", "--dataset", "digits", "--widths", "16"]
    argv += ["--steps", "20", "--batch-size", "64", "--no-progress", "--plot", ""]
    argv += ["--json", str(log), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    processes = [
        fresh_command([*argv, "--process-id", str(i)], {"XLA_FLAGS": ""}) for i in range(2)
    ]
    outputs = finish(processes, timeout=600)
    assert json.loads(log.read_text())["mesh"]["processes"] == 2
    assert "wrote" in outputs[0][0] and "wrote" not in outputs[1][0]
