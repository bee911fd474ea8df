"""Convolutions on the CPU: what one costs at the layer sizes DemP prunes LeNet-5 to,
XLA's kernel side by side with PyTorch's, and a LeNet-5 training step at dense and at
pruned widths.

DemP misses its speed goal on Fashion-MNIST's LeNet-5 (benchmarks/README.md, DemP
section) while meeting it on the MLP and the small VGG; this benchmark measures why.

Convolutions (`conv.*`): batch 128, 5x5 kernels, "same" padding, float32, on the
image sizes of LeNet-5's two layers (28x28 and 14x14), over channel pairs from 1 -> 1
to 32 -> 32. For each, the forward pass, the gradient with respect to the input and
the gradient with respect to the weights, each its own compiled program (JAX: `jax.jit`
with the options toolkit compiles its training steps with; PyTorch: `F.conv2d` and
`torch.autograd.grad`, its default threads), median of 20 calls after 3 warm-up calls,
the two libraries interleaved call by call.

Training steps (`step.*`): `nn.ConvNet` with BatchNorm (LeNet-5's layout), batch 128,
softmax cross-entropy (`pruning.classification_loss`), AdamW, jitted with toolkit's
options, at the dense widths and at widths of the sizes DemP's runs end with;
median of 30 steps, the widths interleaved step by step.

Results go to `benchmarks/results/conv_cost.json`, written after every case; finished
cases are skipped unless `--force` names them (`--force` alone: all).

    python benchmarks/conv_cost.py              # measure every missing case
    python benchmarks/conv_cost.py --readme     # ... and write the README section
    python benchmarks/conv_cost.py --report-only --readme   # from the JSON alone
"""

import argparse
import pathlib

from _harness import arguments, forced, interleaved, log, Store, write_section
from _provenance import machine, OtherLoad


HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results" / "conv_cost.json"
README = HERE / "README.md"
SECTION = "## Convolutions on the CPU: why a pruned LeNet-5 trains little faster"
BEFORE = "## Scale out: batched planning and data-parallel training on more devices"
BATCH = 128
KERNEL = 5

# (image side, input channels, output channels)
CONVS = [
    (28, 1, 1),
    (28, 1, 3),
    (28, 1, 6),
    (14, 1, 1),
    (14, 2, 4),
    (14, 3, 3),
    (14, 4, 6),
    (14, 6, 16),
    (14, 16, 16),
    (14, 32, 32),
]
PASSES = ("forward", "input_gradient", "weight_gradient")
# name -> (convolution channels, hidden widths); "dense" is LeNet-5.
WIDTHS = {
    "dense": ((6, 16), (120, 84)),
    "4-6": ((4, 6), (20, 14)),
    "3-3": ((3, 3), (10, 8)),
    "1-1": ((1, 1), (1, 1)),
}


def conv_key(side: int, cin: int, cout: int) -> str:
    return f"conv.{side}.{cin}-{cout}"


def _passes(record: dict, name: str) -> list[float]:
    """`name`'s times (ms) of the three passes of a convolution record."""
    return [record[f"{name}_{p}_ms"] for p in PASSES]


def measure_conv(side: int, cin: int, cout: int) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import torch.nn.functional as F

    import toolkit
    from toolkit import nn

    options = toolkit.compiler_options() or None
    pad = KERNEL // 2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, cin, side, side)).astype(np.float32)
    w = rng.normal(size=(cout, cin, KERNEL, KERNEL)).astype(np.float32)
    dy = rng.normal(size=(BATCH, cout, side, side)).astype(np.float32)

    def conv(w, x):
        return jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)))

    layer = eqx.nn.Conv2d(cin, cout, KERNEL, padding=pad, use_bias=False, key=jax.random.key(0))

    def toolkit_conv(w, x):
        # What `nn.ConvNet` computes: `nn.convolve` on one example, vmapped over the batch.
        with_w = eqx.tree_at(lambda c: c.weight, layer, w)
        return jax.vmap(lambda e: nn.convolve(with_w, e))(x)

    jx, jw, jdy = jnp.asarray(x), jnp.asarray(w), jnp.asarray(dy)

    def programs(conv):
        return {
            "forward": (jax.jit(conv, compiler_options=options), (jw, jx)),
            "input_gradient": (
                jax.jit(
                    lambda w, x, dy: jax.vjp(lambda x: conv(w, x), x)[1](dy)[0],
                    compiler_options=options,
                ),
                (jw, jx, jdy),
            ),
            "weight_gradient": (
                jax.jit(
                    lambda w, x, dy: jax.vjp(lambda w: conv(w, x), w)[1](dy)[0],
                    compiler_options=options,
                ),
                (jw, jx, jdy),
            ),
        }

    jax_programs = programs(conv)
    toolkit_programs = programs(toolkit_conv)
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tdy = torch.from_numpy(dy)

    def torch_forward():
        with torch.no_grad():
            return F.conv2d(tx, tw, padding=pad)

    def torch_gradient(wrt):
        def run():
            y = F.conv2d(tx, tw, padding=pad)
            return torch.autograd.grad(y, [wrt], tdy)[0]

        return run

    torch_programs = {
        "forward": torch_forward,
        "input_gradient": torch_gradient(tx),
        "weight_gradient": torch_gradient(tw),
    }
    # The weight gradients agree (a check that all three compute the same thing).
    theirs = torch_programs["weight_gradient"]().numpy()
    agree = 0.0
    for progs in (jax_programs, toolkit_programs):
        ours = np.asarray(progs["weight_gradient"][0](*progs["weight_gradient"][1]))
        agree = max(
            agree, float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-30))
        )

    out = {"side": side, "in": cin, "out": cout, "weight_gradient_rel_diff": agree}
    with OtherLoad() as other:
        for part in PASSES:
            (f, a), (g, b) = jax_programs[part], toolkit_programs[part]
            runs = {"xla": lambda: f(*a), "toolkit": lambda: g(*b), "torch": torch_programs[part]}
            for run in runs.values():
                for _ in range(3):
                    run()
            timings = interleaved(runs, min_rounds=20, max_rounds=20, budget_s=0.0)
            for name, t in timings.items():
                out[f"{name}_{part}_ms"] = 1e3 * t["median_s"]
    out["forward_mflop"] = 2 * BATCH * cout * side * side * cin * KERNEL * KERNEL / 1e6
    out["torch_threads"] = torch.get_num_threads()
    out["torch"] = torch.__version__
    out["other_cores"] = other.cores
    return out


def measure_steps() -> dict:
    import equinox as eqx
    import jax
    import jax.random as jr
    import optax

    import toolkit
    from toolkit import nn, pruning

    options = toolkit.compiler_options() or None
    opt = optax.adamw(1e-3, weight_decay=5e-4)
    xs = jr.normal(jr.key(1), (BATCH, 1, 28, 28))
    ys = jr.randint(jr.key(2), (BATCH,), 0, 10)

    @eqx.filter_jit(compiler_options=options)
    def step(model, state, opt_state, xs, ys):
        loss = eqx.filter_value_and_grad(pruning.classification_loss, has_aux=True)
        (value, (state, _)), grads = loss(model, state, xs, ys)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, opt_state, value

    runs = {}
    units = {}
    for name, (channels, hidden) in WIDTHS.items():
        model, state = eqx.nn.make_with_state(nn.ConvNet)(
            1, 10, 28, channels=channels, hidden=hidden, batch_norm=True, key=jr.key(0)
        )
        opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
        args = (model, state, opt_state, xs, ys)
        for _ in range(3):
            jax.block_until_ready(step(*args))
        runs[name] = args
        units[name] = sum(channels) + sum(hidden)
    calls = {name: (lambda args=args: step(*args)) for name, args in runs.items()}
    with OtherLoad() as other:
        timings = interleaved(calls, min_rounds=30, max_rounds=30, budget_s=0.0)
    return {
        "widths": {k: [list(c), list(h)] for k, (c, h) in WIDTHS.items()},
        "units": units,
        "step_ms": {k: 1e3 * t["median_s"] for k, t in timings.items()},
        "other_cores": other.cores,
    }


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def report(store: Store) -> tuple[str, list[str]]:
    entries = store.entries()
    convs = [entries[conv_key(*c)] for c in CONVS if conv_key(*c) in entries]
    rows = [
        "| image | channels | forward MFLOP | XLA forward / input grad. / weight grad. (ms) "
        "| XLA GFLOP/s (forward) | toolkit `nn.convolve`: the same three (ms) "
        "| PyTorch forward / input grad. / weight grad. (ms) "
        "| XLA / PyTorch (sum of the three) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in convs:
        xla, ours, tor = (_passes(e, name) for name in ("xla", "toolkit", "torch"))
        rows.append(
            f"| {e['side']}x{e['side']} | {e['in']} -> {e['out']} | {e['forward_mflop']:.1f} "
            f"| {' / '.join(map(_fmt, xla))} | {e['forward_mflop'] / xla[0]:.1f} "
            f"| {' / '.join(map(_fmt, ours))} "
            f"| {' / '.join(map(_fmt, tor))} | {sum(xla) / sum(tor):.2f}x |"
        )
    table = "\n".join(rows)
    lines = []
    small = [e for e in convs if e["side"] == 14 and e["in"] * e["out"] <= 48]
    largest = max(
        (e for e in convs if e["side"] == 14), key=lambda e: e["forward_mflop"], default=None
    )
    if len(small) >= 2 and largest is not None:
        a = min(small, key=lambda e: e["forward_mflop"])
        b = max(small, key=lambda e: e["forward_mflop"])

        def pair(e):
            return f"{e['in']} -> {e['out']}"

        lines.append(
            f"XLA's forward on 14x14 images, from {pair(a)} ({a['forward_mflop']:.1f} MFLOP) "
            f"to {pair(b)} ({b['forward_mflop']:.1f} MFLOP): "
            f"{b['forward_mflop'] / a['forward_mflop']:.0f}x the arithmetic, "
            f"{b['xla_forward_ms'] / a['xla_forward_ms']:.2f}x the time "
            f"({a['xla_forward_ms']:.2f} -> {b['xla_forward_ms']:.2f} ms); at {pair(largest)} "
            f"{largest['xla_forward_ms']:.2f} ms for {largest['forward_mflop']:.0f} MFLOP "
            f"({largest['forward_mflop'] / largest['xla_forward_ms']:.0f} GFLOP/s against "
            f"{a['forward_mflop'] / a['xla_forward_ms']:.1f} at {pair(a)}). PyTorch's forward "
            f"at the same {len(small)} sizes: {min(e['torch_forward_ms'] for e in small):.2f}-"
            f"{max(e['torch_forward_ms'] for e in small):.2f} ms."
        )
    if convs:
        ratios = [sum(_passes(e, "xla")) / sum(_passes(e, "torch")) for e in convs]
        worst = max(e["weight_gradient_rel_diff"] for e in convs)
        lines.append(
            f"XLA / PyTorch {convs[0]['torch']} ({convs[0]['torch_threads']} threads), the "
            f"three passes summed: {min(ratios):.2f}x-{max(ratios):.2f}x (the weight "
            f"gradients agree to {worst:.1e}, relative)."
        )
    busy = [e["other_cores"] for e in entries.values() if e.get("other_cores") is not None]
    if busy:
        lines.append(
            f"Other processes kept {min(busy):.2f}-{max(busy):.2f} of the cores busy while "
            "these were measured (the machine is shared)."
        )
    steps = entries.get("steps")
    if steps:
        dense = steps["step_ms"]["dense"]
        parts = []
        for name, ms in steps["step_ms"].items():
            if name == "dense":
                continue
            (c, h) = steps["widths"][name]
            kept = steps["units"][name] / steps["units"]["dense"]
            parts.append(
                f"channels {tuple(c)}, hidden {tuple(h)} ({100 * (1 - kept):.0f} % of the units "
                f"pruned): {ms:.1f} ms, {dense / ms:.2f}x faster than dense"
            )
        lines.append(
            f"A LeNet-5 training step (BatchNorm, batch {BATCH}, AdamW), dense: {dense:.1f} ms; "
            + "; ".join(parts)
            + "."
        )
    return table, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    opts = arguments(parser, example="conv.14", report_only=True).parse_args()

    def versions():
        import torch

        return machine(torch=torch.__version__)

    store = Store(
        RESULTS,
        forced(opts),
        section=("runs",),
        machine=versions,
        machine_at=("machine", "runs"),
    )
    if not opts.report_only:
        for side, cin, cout in CONVS:
            key = conv_key(side, cin, cout)
            if store.todo(key):
                log(f"{key}")
                store.put(key, measure_conv(side, cin, cout))
        if store.todo("steps"):
            log("steps")
            store.put("steps", measure_steps())
    table, lines = report(store)
    print(table)
    for line in lines:
        print("  " + line)
    if opts.readme:
        write_section(
            store,
            README,
            SECTION,
            "DemP meets its speed goal on the MLP and the small VGG but not on Fashion-MNIST's "
            "LeNet-5 (DemP section above). What a convolution costs at LeNet-5's "
            f'layer sizes (batch {BATCH}, {KERNEL}x{KERNEL}, "same" padding, float32; '
            "forward, input gradient and weight gradient each a program compiled with "
            "toolkit's options; `nn.convolve` as `nn.ConvNet` calls it, on one example "
            "vmapped over the batch, which computes a one-channel input as a matrix product) "
            "against PyTorch's, interleaved call by call, median of 20; "
            "then a LeNet-5 training step at dense and at pruned widths (median of 30, the "
            "widths interleaved).",
            "conv_cost",
            table,
            lines,
            before=BEFORE,
            versions={"PyTorch": "torch"},
        )


if __name__ == "__main__":
    main()
