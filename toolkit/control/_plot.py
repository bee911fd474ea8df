def plot_solution(sol, title: str = "", path: str | None = None):
    """Plot states, controls (and costates when present) of a `Solution`.

    **Arguments:**

    - `sol`: a [`toolkit.control.Solution`][].
    - `title`: the figure title.
    - `path`: if given, save the figure there.

    **Returns:**

    The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    ts = np.asarray(sol.ts)
    panels = 3 if sol.costates is not None else 2
    fig, axes = plt.subplots(panels, 1, figsize=(7, 2.4 * panels), sharex=True)
    for i in range(sol.xs.shape[1]):
        axes[0].plot(ts, np.asarray(sol.xs[:, i]), marker=".", markersize=2, label=f"x{i + 1}")
    axes[0].set_ylabel("states x")
    axes[0].legend(fontsize=7)
    for i in range(sol.us.shape[1]):
        axes[1].plot(ts, np.asarray(sol.us[:, i]), marker=".", markersize=2, label=f"u{i + 1}")
    axes[1].set_ylabel("controls u")
    if sol.costates is not None:
        mid = 0.5 * (ts[1:] + ts[:-1])
        for i in range(sol.costates.shape[1]):
            axes[2].plot(mid, np.asarray(sol.costates[:, i]), label=f"p{i + 1}")
        axes[2].set_ylabel("costates p")
    axes[-1].set_xlabel("t")
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
