import os
from typing import Any


def plot_histories(
    histories: dict[str, dict[str, Any]],
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
):
    """Plot training logs side by side: test accuracy, live units and parameters
    against the step, one line per run.

    **Arguments:**

    - `histories`: a dict from a run's label to the log that
        [`toolkit.pruning.train`][] returned.
    - `path`: a file to save the figure to (its extension picks the format), or
        `None` to only return it.
    - `title`: the figure's title.

    **Returns:**

    The matplotlib `Figure`.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for label, history in histories.items():
        records = history["evaluations"]
        steps = [r["step"] for r in records]
        (line,) = axes[0].plot(steps, [r["test_accuracy"] for r in records], label=label)
        axes[1].plot(steps, [sum(r["live"].values()) for r in records], color=line.get_color())
        axes[1].plot(
            steps,
            [sum(r["widths"].values()) for r in records],
            color=line.get_color(),
            linestyle=":",
        )
        axes[2].plot(steps, [r["params"] for r in records], color=line.get_color())
        for prune in history.get("prunes", ()):
            axes[2].axvline(prune["step"], color=line.get_color(), alpha=0.15, linewidth=0.8)
    axes[0].set_ylabel("test accuracy")
    axes[1].set_ylabel("units")
    axes[1].set_title("live on held-out data (solid), in the network (dotted)", fontsize="small")
    axes[2].set_ylabel("parameters")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def plot_tradeoff(
    dense: dict[str, Any] | None,
    runs: dict[str, dict[str, Any]],
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
):
    """Plot the accuracy–sparsity trade-off: the final test accuracy of each run
    against the fraction of parameters it kept, with the dense run as a reference.

    **Arguments:**

    - `dense`: the log of a dense run, or `None`.
    - `runs`: a dict from a label (such as the regularisation strength) to a log.
    - `path`: a file to save the figure to, or `None` to only return it.
    - `title`: the figure's title.

    **Returns:**

    The matplotlib `Figure`.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    def point(history):
        first, last = history["evaluations"][0], history["evaluations"][-1]
        return 100 * last["params"] / first["params"], last["test_accuracy"]

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    if dense is not None:
        ax.axhline(point(dense)[1], color="k", linestyle=":", label="dense")
    points = [point(h) for h in runs.values()]
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label="DemP")
    for label, (x, y) in zip(runs, points):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("parameters kept (%)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
