import argparse
import sys

from ._cli_checks import reporting
from ._compilation_cache import enable_compilation_cache


def _demo(ns) -> int:
    """DemP against dense training on an embedded data set, then one planned control
    problem: the two halves of toolkit in a few minutes on a CPU."""
    from .pruning import _cli as pruning_cli

    print("== 1/2  pruning by dying neurons: DemP vs dense training ==", flush=True)
    rc = pruning_cli.demo(ns)
    print("\n== 2/2  planning: the cancer-treatment problem ==", flush=True)
    plan_ns = argparse.Namespace(
        list=False,
        problem="cancer_treatment",
        transcription="trapezoidal",
        method="newton",
        N=None,
        json=None,
        plot=ns.plan_plot,
        # Not from stored programs: XLA:CPU may leave kernels the training's programs
        # share with the plan's out of a stored copy (see control/_stored.py).
        store=False,
    )
    from .control import _cli as control_cli

    return max(rc, control_cli.plan(plan_ns))


def _command(argv: list[str]) -> str | None:
    """The subcommand named on the command line, or None (e.g. `--help` alone)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    # Only the chosen command's module is imported (each pulls in its half of the
    # library): `plan` does not wait for the pruning half's imports.
    chosen = _command(sys.argv[1:] if argv is None else argv)
    p = sub.add_parser("plan", help="plan a problem of the library")
    if chosen in (None, "plan"):
        from .control import _cli as control_cli

        control_cli.add_plan_arguments(p)
        p.set_defaults(run=reporting(control_cli.plan), parser=p)
    p = sub.add_parser("train", help="train a network with DemP (or densely) on a data set")
    if chosen in (None, "train"):
        from .pruning import _cli as pruning_cli

        pruning_cli.add_train_arguments(p)
        p.set_defaults(run=pruning_cli.train)
    p = sub.add_parser("sweep", help="DemP at several strengths: accuracy vs parameters kept")
    if chosen in (None, "sweep"):
        from .pruning import _cli as pruning_cli

        pruning_cli.add_sweep_arguments(p)
        p.set_defaults(run=pruning_cli.sweep)
    p = sub.add_parser(
        "demo", help="DemP vs dense training on the embedded digits, then a planned problem"
    )
    if chosen in (None, "demo"):
        from .pruning import _cli as pruning_cli

        pruning_cli.add_demo_arguments(p)
        p.add_argument(
            "--plan-plot", default="demo_plan.png", help="plot of the planned control problem"
        )
        p.set_defaults(run=reporting(_demo), parser=p)
    p = sub.add_parser(
        "learn", help="learn a problem's dynamics from data, then end to end through the planner"
    )
    if chosen in (None, "learn"):
        from .control.learning import _cli as learning_cli

        learning_cli.add_learn_arguments(p)
        p.set_defaults(run=learning_cli.learn, parser=p)
    ns = parser.parse_args(argv)
    enable_compilation_cache()
    return ns.run(ns)
