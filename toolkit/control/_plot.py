def plot_solution(sol, title: str = "", path: str | None = None):
    """Plot states, controls (and costates when present) of a `Solution`.

    **Arguments:**

    - `sol`: a [`toolkit.control.Solution`][].
    - `title`: the figure title.
    - `path`: if given, save the figure there.

    **Returns:**

    The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ts = np.asarray(sol.ts)
    panels = 3 if sol.costates is not None else 2
    fig, axes = plt.subplots(panels, 1, figsize=(7, 2.4 * panels), sharex=True)
    axes[0].plot(ts, np.asarray(sol.xs), marker=".", markersize=2)
    axes[0].set_ylabel("states x")
    axes[0].legend([f"x{i + 1}" for i in range(sol.xs.shape[1])], fontsize=7)
    axes[1].plot(ts, np.asarray(sol.us), marker=".", markersize=2)
    axes[1].set_ylabel("controls u")
    if sol.costates is not None:
        mid = 0.5 * (ts[1:] + ts[:-1])
        axes[2].plot(mid, np.asarray(sol.costates))
        axes[2].set_ylabel("costates p")
    axes[-1].set_xlabel("t")
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
