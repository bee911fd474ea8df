"""Pruning: toolkit vs Torch-Pruning, on ResNet-18 (CIFAR widths), on the CPU.

The same architecture on both sides: a CIFAR stem (3×3 conv, BatchNorm, no max pool),
stages of 2, 2, 2, 2 basic blocks of 64, 128, 256, 512 channels (projection shortcuts
where the shape changes), global average pooling, a linear classifier; convolutions
without bias, float32. toolkit: `toolkit.nn.ResNet(3, 10)`; PyTorch: `TorchResNet`
below, written to match it parameter for parameter.

Unit sparsity p: in every unit group (toolkit's `model.wiring()`: each stage's residual
stream, tied with the stem, and each block's inner channels) keep max(1, int(size ·
(1 - p))) units chosen at random; Torch-Pruning (`MetaPruner`, `RandomImportance`,
local pruning, the classifier ignored) removes the same number per coupled group, so
both sides end with the same widths.

Measurements (each written to `benchmarks/results/prune.json` as soon as it finishes;
finished ones are skipped on a re-run unless `--force`):

1. `prune_time/p=0.5`: the time of one prune, median of interleaved repeats:
    toolkit `pruning.prune((model, state, adamw_state), dead)` (again with other random
    units every round, so that only the layout's plan is reused, and with
    `dead_from_masks` included, which resolves the wiring), vs Torch-Pruning's
    `MetaPruner(...)` construction (it traces the model to build the dependency
    graph) + `pruner.step()`, and `pruner.step()` alone. Torch-Pruning prunes the
    model in place, so each repeat prunes a fresh deep copy (the copy is not timed).
2. `step/p=...` (p = 0.5, 0.8, 0.9): one forward + backward pass (cross-entropy on
    a random batch of CIFAR-shaped inputs, BatchNorm in training mode): toolkit =
    `eqx.filter_jit(eqx.filter_value_and_grad(...))` over `jax.vmap(...,
    axis_name="batch")`; PyTorch = eager `loss.backward()`. Dense and pruned, both
    frameworks, timed round-robin; reported as pruned / dense ratios per framework,
    with parameter counts side by side.

    python benchmarks/prune.py                # what is missing, full run (~10 min)
    python benchmarks/prune.py --quick        # smoke run (~2 min)
    python benchmarks/prune.py --readme       # ... and write the README section
    python benchmarks/prune.py --force        # re-measure everything
    python benchmarks/prune.py --force step   # re-measure `step/...` only
    python benchmarks/prune.py --threads 2    # PyTorch / XLA threads (default 1)

PyTorch and XLA run single-threaded by default: on a shared CPU whose cores other
processes keep busy, PyTorch with 2 threads took 1-4 s per ResNet-18 step where one
thread took 0.4 s, steady, which would swamp the ratios.
"""

import argparse
import copy
import importlib.metadata
import os
import pathlib
import sys
import time

import _provenance


THREADS = _provenance.xla_threads(sys.argv[1:])

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_pruning as tp  # noqa: E402
from _harness import arguments, forced, interleaved, log, Store  # noqa: E402
from _provenance import (  # noqa: E402
    machine_line,
    measured_line,
    OtherLoad,
    replace_section,
)

from toolkit import nn as tknn, pruning  # noqa: E402


HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "results" / "prune.json"
README = HERE / "README.md"
SECTION = "## Pruning: toolkit vs Torch-Pruning"

WIDTHS = (64, 128, 256, 512)
BLOCKS = (2, 2, 2, 2)
CLASSES = 10


def machine() -> dict:
    return _provenance.machine(
        equinox=eqx.__version__,
        optax=optax.__version__,
        torch=torch.__version__,
        threads=THREADS,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        torch_threads=torch.get_num_threads(),
        torch_pruning=importlib.metadata.version("torch-pruning"),
    )


# --------------------------------------------------------------------------------------
# The PyTorch twin of toolkit.nn.ResNet.
# --------------------------------------------------------------------------------------


class TorchBlock(tnn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = tnn.BatchNorm2d(c_out)
        self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = tnn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.projection = tnn.Sequential(
                tnn.Conv2d(c_in, c_out, 1, stride, bias=False), tnn.BatchNorm2d(c_out)
            )
        else:
            self.projection = None

    def forward(self, x):
        z = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        shortcut = x if self.projection is None else self.projection(x)
        return F.relu(z + shortcut)


class TorchResNet(tnn.Module):
    def __init__(self, in_channels: int, out_size: int, blocks=BLOCKS, widths=WIDTHS):
        super().__init__()
        self.stem = tnn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.stem_norm = tnn.BatchNorm2d(widths[0])
        layers = []
        c_in = widths[0]
        for s, (n, width) in enumerate(zip(blocks, widths)):
            for b in range(n):
                layers.append(TorchBlock(c_in, width, 2 if (s > 0 and b == 0) else 1))
                c_in = width
        self.blocks = tnn.Sequential(*layers)
        self.fc = tnn.Linear(c_in, out_size)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem_norm(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


def torch_params(model: tnn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torch_prune(model: tnn.Module, p: float) -> tp.pruner.MetaPruner:
    pruner = tp.pruner.MetaPruner(
        model,
        torch.randn(1, 3, 32, 32),
        importance=tp.importance.RandomImportance(),
        pruning_ratio=p,
        ignored_layers=[model.fc],
    )
    pruner.step()
    return pruner


def torch_widths(model: TorchResNet) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, tnn.Conv2d)]


# --------------------------------------------------------------------------------------
# toolkit.
# --------------------------------------------------------------------------------------


def make_toolkit(seed: int = 0):
    model, state = eqx.nn.make_with_state(tknn.ResNet)(
        3, CLASSES, BLOCKS, WIDTHS, key=jr.PRNGKey(seed)
    )
    return model, state


def random_masks(model, p: float, seed: int) -> dict[str, np.ndarray]:
    """Per group, True (dead) on all but max(1, int(size · (1 - p))) random units; the
    same count as Torch-Pruning's local pruning keeps."""
    rng = np.random.default_rng(seed)
    masks = {}
    for name, size in pruning.widths(model).items():
        keep = max(1, int(size * (1 - p)))
        dead = np.ones(size, dtype=bool)
        dead[rng.choice(size, keep, replace=False)] = False
        masks[name] = dead
    return masks


@eqx.filter_jit
def jax_step(model, state, xs, ys):
    def loss(m):
        logits, st = jax.vmap(m, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(
            xs, state
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean(), st

    (value, st), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
    return value, st, grads


def torch_step(model, xs, ys):
    def fn():
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs), ys)
        loss.backward()
        return loss.detach()

    return fn


def toolkit_widths(model) -> list[int]:
    return [
        leaf.out_channels
        for leaf in jax.tree_util.tree_leaves(model, is_leaf=lambda x: isinstance(x, eqx.nn.Conv2d))
        if isinstance(leaf, eqx.nn.Conv2d)
    ]


# --------------------------------------------------------------------------------------
# Measurements.
# --------------------------------------------------------------------------------------


def measure_prune_time(store: Store, p: float, cfg: dict) -> None:
    key = f"prune_time/p={p}"
    if not store.todo(key):
        log(f"  {key}: done, skipped")
        return
    model, state = make_toolkit()
    opt = optax.adamw(1e-3)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    masks = random_masks(model, p, seed=1)
    dead = pruning.dead_from_masks(model, masks)
    tree = (model, state, opt_state)

    def tk_prune():
        return pruning.prune(tree, dead)

    def tk_model():
        return pruning.prune(model, dead)

    def tk_full():
        return pruning.prune(tree, pruning.dead_from_masks(model, masks))

    def tk_new():
        return pruning.prune(tree, fresh["dead"])

    base = TorchResNet(3, CLASSES)
    fresh = {}
    rounds = iter(range(2, 10**6))

    def setup():
        # New random units every round, the same count: nothing is reused but the
        # layout's plan, as when a training run prunes again.
        fresh["dead"] = pruning.dead_from_masks(model, random_masks(model, p, next(rounds)))
        fresh["a"] = copy.deepcopy(base)
        fresh["b"] = copy.deepcopy(base)
        fresh["b_pruner"] = tp.pruner.MetaPruner(
            fresh["b"],
            torch.randn(1, 3, 32, 32),
            importance=tp.importance.RandomImportance(),
            pruning_ratio=p,
            ignored_layers=[fresh["b"].fc],
        )

    def tp_full():
        torch_prune(fresh["a"], p)

    def tp_step():
        fresh["b_pruner"].step()

    # first calls (cold): not in the medians
    t0 = time.perf_counter()
    pruned = jax.block_until_ready(tk_full())
    tk_cold = time.perf_counter() - t0
    setup()
    t0 = time.perf_counter()
    tp_full()
    tp_cold = time.perf_counter() - t0
    with OtherLoad() as other:
        res = interleaved(
            {
                "toolkit_prune": tk_prune,
                "toolkit_prune_new_masks": tk_new,
                "toolkit_prune_model_only": tk_model,
                "toolkit_dead_from_masks+prune": tk_full,
                "torchpruning_MetaPruner+step": tp_full,
                "torchpruning_step": tp_step,
            },
            min_rounds=cfg["prune_rounds"],
            max_rounds=cfg["prune_rounds"] * 3,
            budget_s=cfg["prune_budget_s"],
            setup=setup,
        )
    pm, ps, po = pruned
    entry = {
        "p": p,
        "times": res,
        "ratio": res["toolkit_prune"]["median_s"] / res["torchpruning_MetaPruner+step"]["median_s"],
        "toolkit_cold_s": tk_cold,
        "torchpruning_cold_s": tp_cold,
        "toolkit_params_dense": pruning.count_params(model),
        "toolkit_params_pruned": pruning.count_params(pm),
        "toolkit_adamw_state_entries_pruned": pruning.count_params(po),
        "torch_params_dense": torch_params(base),
        "torch_params_pruned": torch_params(fresh["a"]),
        "other_cores": other.cores,
        "loadavg_1min": other.loadavg,
    }
    store.put(key, entry)
    log(
        f"  {key}: toolkit prune {res['toolkit_prune']['median_s'] * 1e3:.1f} ms, "
        f"Torch-Pruning MetaPruner+step {res['torchpruning_MetaPruner+step']['median_s'] * 1e3:.1f}"
        f" ms, ratio {entry['ratio']:.2f} (other cores busy {other.cores})"
    )


def measure_step(store: Store, p: float, cfg: dict) -> None:
    key = f"step/p={p}/batch={cfg['batch']}"
    if not store.todo(key):
        log(f"  {key}: done, skipped")
        return
    B = cfg["batch"]
    rng = np.random.default_rng(0)
    xs_np = rng.standard_normal((B, 3, 32, 32)).astype(np.float32)
    ys_np = rng.integers(0, CLASSES, B)
    xs, ys = jnp.asarray(xs_np), jnp.asarray(ys_np)
    txs, tys = torch.from_numpy(xs_np), torch.from_numpy(ys_np).long()

    model, state = make_toolkit()
    dead = pruning.dead_from_masks(model, random_masks(model, p, seed=2))
    pmodel, pstate = pruning.prune((model, state), dead)

    tdense = TorchResNet(3, CLASSES)
    tpruned = copy.deepcopy(tdense)
    torch_prune(tpruned, p)
    tdense.train()
    tpruned.train()

    # compile / warm up (not in the medians)
    compile_s = {}
    for name, (m, s) in {"dense": (model, state), "pruned": (pmodel, pstate)}.items():
        t0 = time.perf_counter()
        jax.block_until_ready(jax_step(m, s, xs, ys))
        compile_s[name] = time.perf_counter() - t0
    fns = {
        "toolkit_dense": lambda: jax_step(model, state, xs, ys),
        "toolkit_pruned": lambda: jax_step(pmodel, pstate, xs, ys),
        "torch_dense": torch_step(tdense, txs, tys),
        "torch_pruned": torch_step(tpruned, txs, tys),
    }
    for fn in fns.values():
        jax.block_until_ready(fn())
    with OtherLoad() as other:
        res = interleaved(
            fns,
            min_rounds=cfg["step_rounds"],
            max_rounds=cfg["step_rounds"] * 3,
            budget_s=cfg["step_budget_s"],
        )
    tk_w, t_w = toolkit_widths(pmodel), torch_widths(tpruned)
    entry = {
        "p": p,
        "batch": B,
        "times": res,
        "toolkit_compile_s": compile_s,
        "toolkit_ratio": res["toolkit_pruned"]["median_s"] / res["toolkit_dense"]["median_s"],
        "torch_ratio": res["torch_pruned"]["median_s"] / res["torch_dense"]["median_s"],
        "toolkit_params_dense": pruning.count_params(model),
        "toolkit_params_pruned": pruning.count_params(pmodel),
        "torch_params_dense": torch_params(tdense),
        "torch_params_pruned": torch_params(tpruned),
        "toolkit_flops_dense": pruning.flops(model, state, xs[0]),
        "toolkit_flops_pruned": pruning.flops(pmodel, pstate, xs[0]),
        "same_widths": sorted(tk_w) == sorted(t_w),
        "other_cores": other.cores,
        "loadavg_1min": other.loadavg,
    }
    store.put(key, entry)
    log(
        f"  {key}: pruned/dense toolkit {entry['toolkit_ratio']:.3f}, torch "
        f"{entry['torch_ratio']:.3f}; params toolkit {entry['toolkit_params_pruned']:,} "
        f"torch {entry['torch_params_pruned']:,} (other cores busy {other.cores})"
    )


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def _ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.1f} s"


def report(store: Store, ps: list[float], cfg: dict) -> str:
    R = store.entries()
    lines = []
    pt = R.get("prune_time/p=0.5")
    if pt is not None:
        t = pt["times"]

        def row(what: str, name: str, cold: float | None = None) -> str:
            if name not in t:  # recorded before this variant was timed
                return ""
            c = "" if cold is None else _ms(cold)
            return (
                f"| {what} | {_ms(t[name]['median_s'])} | {_ms(t[name]['min_s'])} | "
                f"{t[name]['repeats']} | {c} |\n"
            )

        ratio = t["toolkit_prune"]["median_s"] / t["torchpruning_MetaPruner+step"]["median_s"]
        lines += [
            "**Prune time**, ResNet-18 (CIFAR widths), 50% unit sparsity, random units "
            "(median and minimum of interleaved repeats; cold = first call):",
            "",
            "| what is pruned / timed | median | min | repeats | cold |",
            "|---|---|---|---|---|\n"
            + row("toolkit `prune((model, State, AdamW state), dead)`", "toolkit_prune")
            + row(
                "toolkit `prune((model, State, AdamW state), dead)`, new random units every round",
                "toolkit_prune_new_masks",
            )
            + row("toolkit `prune(model, dead)` (model only)", "toolkit_prune_model_only")
            + row(
                "toolkit `dead_from_masks` + `prune(...)` (same tree)",
                "toolkit_dead_from_masks+prune",
                pt["toolkit_cold_s"],
            )
            + row(
                "Torch-Pruning `MetaPruner(...)` + `step()` (model only)",
                "torchpruning_MetaPruner+step",
                pt["torchpruning_cold_s"],
            )
            + row("Torch-Pruning `step()` alone (graph already built)", "torchpruning_step"),
            f"toolkit's prune of the model, its State and its AdamW state takes **{ratio:.2f}x** "
            "the time of Torch-Pruning's `MetaPruner(...)` + `step()` on the model alone "
            "(medians of the same interleaved run).",
            "",
            f"Parameters after pruning: toolkit {pt['toolkit_params_pruned']:,}, "
            f"Torch-Pruning {pt['torch_params_pruned']:,} (dense: "
            f"{pt['toolkit_params_dense']:,} / {pt['torch_params_dense']:,}).",
            "",
        ]
    rows = []
    for p in ps:
        e = R.get(f"step/p={p}/batch={cfg['batch']}")
        if e is None:
            continue
        t = e["times"]
        rows.append(
            f"| {int(round(p * 100))}% | {e['toolkit_params_pruned']:,} | "
            f"{e['torch_params_pruned']:,} | {'yes' if e['same_widths'] else 'NO'} | "
            f"{e['toolkit_flops_pruned'] / e['toolkit_flops_dense']:.3f} | "
            f"{_ms(t['toolkit_dense']['median_s'])} | {_ms(t['toolkit_pruned']['median_s'])} | "
            f"**{e['toolkit_ratio']:.3f}** | {_ms(t['torch_dense']['median_s'])} | "
            f"{_ms(t['torch_pruned']['median_s'])} | **{e['torch_ratio']:.3f}** | "
            f"{t['toolkit_dense']['repeats']} | {e['other_cores']} |"
        )
    if rows:
        e0 = next(
            R[f"step/p={p}/batch={cfg['batch']}"]
            for p in ps
            if f"step/p={p}/batch={cfg['batch']}" in R
        )
        lines += [
            f"**Forward + backward step**, ResNet-18, batch {cfg['batch']} of 3×32×32 "
            "random inputs, cross-entropy, BatchNorm in training mode; toolkit = jitted "
            "`eqx.filter_value_and_grad`, PyTorch = eager `loss.backward()`; the four "
            "variants timed round-robin, medians; ratio = pruned / dense within each "
            f"framework. Dense parameters: toolkit {e0['toolkit_params_dense']:,}, "
            f"PyTorch {e0['torch_params_dense']:,}.",
            "",
            "| unit sparsity | params toolkit | params Torch-Pruning | same widths | "
            "FLOPs pruned/dense (toolkit `flops`) | toolkit dense | toolkit pruned | "
            "toolkit ratio | "
            "torch dense | torch pruned | torch ratio | repeats | other cores busy |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    others = [v["other_cores"] for v in R.values() if v.get("other_cores") is not None]
    loads = [v["loadavg_1min"] for v in R.values() if v.get("loadavg_1min") is not None]
    if others:
        lines += [
            f"Other processes on the machine kept {min(others):.2f}–{max(others):.2f} "
            f"of its {machine()['cores']} cores busy during the timings (1-minute load "
            f"average {min(loads):.2f}–{max(loads):.2f}); a shared machine, so absolute "
            "times are noisy, ratios from round-robin timings less so.",
            "",
        ]
    return "\n".join(lines)


def write_readme(store: Store, table: str, command: str) -> None:
    m = machine()
    entries = store.entries().values()
    # The machine block describes this run's machine; entries kept from an earlier run
    # on another one say so.
    elsewhere = sorted(k for k, e in store.entries().items() if e.get("cpu") != m["cpu"])
    mixed = (
        f" Kept from an earlier run on another machine: {', '.join(elsewhere)}."
        if elsewhere
        else ""
    )
    section = "\n".join(
        [
            SECTION,
            "",
            "ResNet-18 with CIFAR widths (3×3 stem, no max pool, 64/128/256/512 "
            "channels), the same architecture in toolkit (`toolkit.nn.ResNet`) and in "
            "PyTorch (written in `benchmarks/prune.py`), float32, CPU. Unit sparsity p: "
            "every unit group keeps max(1, int(size·(1−p))) random units; Torch-Pruning "
            "(`MetaPruner`, `RandomImportance`, local, classifier ignored) removes the "
            "same number per coupled group. Torch-Pruning prunes the model only (its "
            "optimiser has to be rebuilt); toolkit's first timed prune also prunes "
            "the `eqx.nn.State` and the AdamW state. PyTorch and XLA run on "
            f"{m['threads']} thread(s) (`--threads`; on this shared machine 2 PyTorch "
            "threads made its step times several times slower and erratic).",
            "",
            f"Reproduce: `{command}` (results in `benchmarks/results/prune.json`, "
            f"mode `{store.section[0]}`).",
            "",
            machine_line(
                m,
                shared=" (shared)",
                versions={
                    "equinox": "equinox",
                    "optax": "optax",
                    "PyTorch": "torch",
                    "Torch-Pruning": "torch_pruning",
                },
            )
            + " "
            + measured_line(entries)
            + mixed,
            "",
            table,
        ]
    )
    replace_section(README, SECTION, section, pad=True)
    log(f"Wrote section {SECTION!r} of {README}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments(parser, example="step", quick="smoke run (~2 minutes)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for PyTorch and XLA (default 1: on a shared, oversubscribed "
        "machine more threads make PyTorch's timings several times slower and erratic; "
        "with N > 1 XLA keeps its default thread pool)",
    )
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)

    if opts.quick:
        mode, ps = "quick", [0.5, 0.9]
        cfg = dict(batch=4, prune_rounds=3, prune_budget_s=5.0, step_rounds=3, step_budget_s=4.0)
    else:
        mode, ps = "full", [0.5, 0.8, 0.9]
        cfg = dict(batch=8, prune_rounds=7, prune_budget_s=30.0, step_rounds=7, step_budget_s=30.0)
    store = Store(
        OUTPUT,
        forced(opts),
        section=(mode,),
        machine=machine,
        machine_at=("machine", mode),
        stamp=lambda: {"cpu": machine()["cpu"]},
    )
    torch.manual_seed(0)
    jax.block_until_ready(jnp.ones(3) + 1)

    log(f"prune ({mode}): results in {OUTPUT}")
    log("1. prune time")
    measure_prune_time(store, 0.5, cfg)
    log("2. forward + backward step")
    for p in ps:
        measure_step(store, p, cfg)

    table = report(store, ps, cfg)
    print()
    print(table)
    if opts.readme:
        cmd = "python benchmarks/prune.py" + (" --quick" if opts.quick else "") + " --readme"
        write_readme(store, table, cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
