import optimistix as optx


class RESULTS(optx.RESULTS):  # pyright: ignore
    """Outcomes of a plan. `RESULTS[result]` is the message of a failure."""

    nonfinite_kkt = (
        "The KKT residual became non-finite (NaN or inf): the dynamics or the costs "
        "return NaN/inf at the initial guess or at every trial point near an iterate. "
        "Check them, `args` and the initial guess."
    )
    singular_kkt = (
        "The KKT Jacobian was singular (the linear solve gave a non-finite step): the "
        "problem may be degenerate at the iterate (e.g. a singular arc)."
    )
    nonzero_residual = (
        "The solver stopped at a point whose KKT residual exceeds the tolerance (for a "
        "least-squares planner: a local minimum of the residual norm that is not a "
        "KKT point). Try another initial guess or the root-finding planner."
    )
