import lineax as lx


class WrappedSolver(lx.AbstractLinearSolver):
    """The lineax solver `inner`, for a subclass to override `compute` (to change what
    a solve returns) and keep the rest: the factorisation, its transpose and
    conjugate are `inner`'s."""

    inner: lx.AbstractLinearSolver

    def init(self, operator, options):
        return self.inner.init(operator, options)

    def compute(self, state, vector, options):
        return self.inner.compute(state, vector, options)

    def transpose(self, state, options):
        return self.inner.transpose(state, options)

    def conj(self, state, options):
        return self.inner.conj(state, options)

    def assume_full_rank(self):
        return self.inner.assume_full_rank()
