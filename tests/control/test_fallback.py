"""Tracing cost of the fallback chain (semismooth Newton, then the interior-point
method, then Newton again): each loop of the plan traced once, none differentiated."""

import collections

import jax
import pytest
from jax._src.interpreters import ad

from toolkit import control
from toolkit.control._planner import interior_point, semismooth_newton


@pytest.mark.parametrize("transcription", [control.Trapezoidal(8), control.HermiteSimpson(4)])
def test_the_plans_loops_are_traced_once_and_never_differentiated(transcription, monkeypatch):
    # The loops only find the root; the implicit derivative is attached at the root
    # afterwards. A tangent leaking into a loop (e.g. bounds from undifferentiated
    # args) makes JAX trace the JVP of the whole solve for nothing, and a weakly typed
    # loop carry makes it trace the loop's body twice: both doubled the time to trace
    # `jax.grad` of a plan.
    steps = collections.Counter()
    for cls in (
        semismooth_newton.SemismoothNewtonRootFinder,
        interior_point.InteriorPointRootFinder,
    ):
        name = cls.__name__

        def step(self, *args, _step=cls.step, _name=name, **kwargs):
            steps[_name] += 1
            return _step(self, *args, **kwargs)

        monkeypatch.setattr(cls, "step", step)
    loop_jvps = []
    while_jvp = ad.primitive_jvps[jax.lax.while_p]

    def counted_jvp(*args, **kwargs):
        loop_jvps.append(kwargs.get("body_jaxpr"))
        return while_jvp(*args, **kwargs)

    monkeypatch.setitem(ad.primitive_jvps, jax.lax.while_p, counted_jvp)

    vdp = control.problems.get("van_der_pol")
    solver = control.KKTNewton(fallback_after=1)

    def cost(args):
        return control.plan(vdp.problem, transcription, solver, args=args).cost

    jax.jit(jax.grad(cost)).trace(vdp.args)
    assert steps == {"SemismoothNewtonRootFinder": 1, "InteriorPointRootFinder": 1}
    assert loop_jvps == []
