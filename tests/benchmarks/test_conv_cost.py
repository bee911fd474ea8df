"""`benchmarks/conv_cost.py` reports what its records hold: the ratios, rates and
speed-ups of its README section, checked against hand-computed values on planted
records (PyTorch, which it measures against, is not needed)."""

import pathlib
import sys


_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
try:
    import conv_cost
    from _harness import Store
finally:
    sys.path.remove(str(_BENCHMARKS))


def _conv(side, cin, cout, xla, toolkit, torch):
    parts = ("forward", "input_gradient", "weight_gradient")
    record = {
        "side": side,
        "in": cin,
        "out": cout,
        "forward_mflop": 2 * conv_cost.BATCH * cout * side * side * cin * 25 / 1e6,
        "weight_gradient_rel_diff": 1e-6,
        "torch": "2.13.0+cpu",
        "torch_threads": 2,
    }
    for name, times in (("xla", xla), ("toolkit", toolkit), ("torch", torch)):
        record.update({f"{name}_{p}_ms": t for p, t in zip(parts, times)})
    return record


def test_the_report_computes_its_ratios_from_the_records(tmp_path):
    store = Store(
        tmp_path / "conv_cost.json",
        None,
        section=("runs",),
        machine=lambda: {"cpu": "test"},
        machine_at=("machine", "runs"),
    )
    first = _conv(14, 1, 1, (2.0, 3.0, 1.0), (1.0, 1.0, 1.0), (0.5, 1.0, 0.5))
    store.put("conv.14.1-1", {**first, "other_cores": 0.1})
    store.put("conv.14.4-6", _conv(14, 4, 6, (4.0, 4.0, 1.0), (4.0, 4.0, 1.0), (1.0, 2.0, 1.0)))
    store.put(
        "conv.14.32-32", _conv(14, 32, 32, (16.0, 16.0, 16.0), (16.0, 16.0, 16.0), (8.0, 16.0, 8.0))
    )
    store.put(
        "steps",
        {
            "widths": {"dense": [[6, 16], [120, 84]], "1-1": [[1, 1], [1, 1]]},
            "units": {"dense": 226, "1-1": 4},
            "step_ms": {"dense": 20.0, "1-1": 5.0},
            "other_cores": 0.4,
        },
    )
    table, lines = conv_cost.report(store)
    rows = table.splitlines()
    assert len(rows) == 2 + 3
    # 1 -> 1: 1.2544 MFLOP in 2 ms is 0.6 GFLOP/s; (2 + 3 + 1) / (0.5 + 1 + 0.5) = 3.00x.
    assert rows[2].startswith("| 14x14 | 1 -> 1 | 1.3 | 2.00 / 3.00 / 1.00 | 0.6 |")
    assert rows[2].endswith("| 0.50 / 1.00 / 0.50 | 3.00x |")
    assert rows[3].endswith("| 2.25x |")  # 9 / 4
    assert rows[4].endswith("| 1.50x |")  # 48 / 32
    # 30.1056 / 1.2544 = 24 times the arithmetic in 4 / 2 = 2 times the time; 32 -> 32
    # is 1284.5 MFLOP in 16 ms, 80 GFLOP/s.
    assert lines[0] == (
        "XLA's forward on 14x14 images, from 1 -> 1 (1.3 MFLOP) to 4 -> 6 (30.1 MFLOP): "
        "24x the arithmetic, 2.00x the time (2.00 -> 4.00 ms); at 32 -> 32 16.00 ms for "
        "1285 MFLOP (80 GFLOP/s against 0.6 at 1 -> 1). PyTorch's forward at the same 2 "
        "sizes: 0.50-1.00 ms."
    )
    assert "the three passes summed: 1.50x-3.00x" in lines[1]
    assert lines[2].startswith("Other processes kept 0.10-0.40 of the cores busy")
    # 4 of 226 units kept: 98 % pruned; 20 / 5 = 4.00x.
    assert lines[3] == (
        "A LeNet-5 training step (BatchNorm, batch 128, AdamW), dense: 20.0 ms; channels "
        "(1, 1), hidden (1, 1) (98 % of the units pruned): 5.0 ms, 4.00x faster than dense."
    )
