import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toolkit
from toolkit import _jit


def test_options_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(_jit.ENV, "off")
    assert toolkit.compiler_options() == {}
    monkeypatch.delenv(_jit.ENV)
    # This XLA knows the option (the suite's conftest passes the same one in XLA_FLAGS).
    assert toolkit.compiler_options() == {"xla_cpu_use_fusion_emitters": False}
    toolkit.compiler_options()["xla_cpu_use_fusion_emitters"] = True  # a copy
    assert toolkit.compiler_options() == {"xla_cpu_use_fusion_emitters": False}
    assert toolkit.compiler_options(planner=True) == {
        "xla_cpu_use_fusion_emitters": False,
        "xla_cpu_experimental_ynn_fusion_type": "",
    }
    monkeypatch.setenv(_jit.ENV, "off")
    assert toolkit.compiler_options(planner=True) == {}


def test_planner_programs_leave_reductions_to_xla():
    # A reduction over the minor axis of a small broadcast product, as in the
    # backward-error check of every block-tridiagonal solve: XLA's CPU backend hands
    # it to a YNNPACK library fusion unless the planner's options say otherwise.
    def row_sums(a, x):
        return jnp.sum(a * x[:, None, :], axis=-1)

    args = (jnp.ones((102, 9, 9)), jnp.ones((102, 9)))
    planner = _jit.filter_jit(row_sums, planner=True)
    np.testing.assert_allclose(planner(*args), np.full((102, 9), 9.0))
    assert "__ynn_fusion" not in planner.lower(*args).compile().compiled.as_text()
    assert "__ynn_fusion" not in _jit.jit(row_sums, planner=True).lower(*args).compile().as_text()


def test_top_level_calls_compile_with_the_options_and_nested_calls_without():
    calls = []

    @_jit.filter_jit
    def f(x, n: int):
        calls.append(n)
        return jnp.sin(x) * n

    x = jnp.linspace(0.0, 1.0, 5)
    expected = np.sin(np.linspace(0.0, 1.0, 5)) * 3
    np.testing.assert_allclose(f(x, 3), expected, rtol=1e-6)
    assert f._top is not f._nested  # compiled with the options
    # JAX refuses compile options on a nested jit: inside a user's transformation the
    # call must be part of their program.
    np.testing.assert_allclose(jax.jit(f, static_argnums=1)(x, 3), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(f, in_axes=(0, None))(x, 3), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda x: f(x, 3).sum())(x), 3 * np.cos(x), rtol=1e-6)
    with pytest.raises(ValueError, match="top-level"):
        jax.jit(lambda x: jax.jit(jnp.sin, compiler_options=toolkit.compiler_options())(x))(x)


def test_unknown_options_are_not_passed(monkeypatch):
    monkeypatch.setattr(_jit, "_OPTIONS", {"xla_no_such_option_anywhere": True})
    _jit._supported.cache_clear()
    try:
        assert toolkit.compiler_options() == {}
        f = _jit.filter_jit(lambda x: x + 1)
        assert float(f(1.0)) == 2.0
        assert f._top is f._nested
    finally:
        _jit._supported.cache_clear()


def test_an_unknown_planner_option_keeps_the_others(monkeypatch):
    monkeypatch.setattr(_jit, "_PLANNER_OPTIONS", {"xla_no_such_option_anywhere": ""})
    _jit._supported.cache_clear()
    try:
        assert toolkit.compiler_options(planner=True) == toolkit.compiler_options()
        assert toolkit.compiler_options() == {"xla_cpu_use_fusion_emitters": False}
    finally:
        _jit._supported.cache_clear()


def test_the_options_probe_is_kept_beside_the_compilation_cache(monkeypatch, tmp_path):
    probes = []

    def probe(options):
        assert options == _jit._options(False)
        probes.append(1)
        return True

    monkeypatch.setattr(_jit, "_probe", probe)
    monkeypatch.setattr(_jit, "_memo_folder", lambda: str(tmp_path))
    _jit._supported.cache_clear()
    try:
        assert _jit._supported(False) and len(probes) == 1
        (memo,) = tmp_path.iterdir()
        assert memo.read_text() == "yes"
        # A new process reads the answer instead of probing.
        _jit._supported.cache_clear()
        memo.write_text("no")
        assert not _jit._supported(False) and len(probes) == 1
        # A corrupt memo is probed again and rewritten; an unwritable folder only
        # costs the probe.
        _jit._supported.cache_clear()
        memo.write_bytes(b"\xff\xfe")
        assert _jit._supported(False) and len(probes) == 2 and memo.read_text() == "yes"
        _jit._supported.cache_clear()
        monkeypatch.setattr(_jit, "_memo_folder", lambda: str(tmp_path / "missing" / "x"))
        assert _jit._supported(False) and len(probes) == 3
    finally:
        _jit._supported.cache_clear()


def test_planner_calls_dispatch_on_their_array_leaves(monkeypatch):
    import equinox as eqx

    class Scaled(eqx.Module):
        factor: jax.Array
        label: str = eqx.field(static=True)

    traces = []

    @_jit.filter_jit(planner=True)
    def f(m, x, n, nothing):
        traces.append((m.label, n, x.shape))
        return {"y": m.factor * jnp.sin(x) * n, "label": m.label, "n": n, "none": nothing}

    x = jnp.linspace(0.0, 1.0, 5)
    m = Scaled(jnp.asarray(2.0), "a")
    out = f(m, x, 3, None)
    np.testing.assert_allclose(out["y"], 6 * np.sin(np.linspace(0.0, 1.0, 5)), rtol=1e-6)
    assert (out["label"], out["n"], out["none"]) == ("a", 3, None)
    # Same structure, statics and shapes: no new trace, whatever the array values.
    out = f(Scaled(jnp.asarray(1.0), "a"), 2 * x, 3, None)
    np.testing.assert_allclose(out["y"], 3 * np.sin(2 * np.linspace(0.0, 1.0, 5)), rtol=1e-6)
    assert traces == [("a", 3, (5,))]
    # A new static value, field or shape: a program of its own.
    f(m, x, 4, None)
    f(Scaled(jnp.asarray(1.0), "b"), x, 4, None)
    f(m, x[:3], 4, None)
    assert traces[1:] == [("a", 4, (5,)), ("b", 4, (5,)), ("a", 4, (3,))]
    # The oldest programs make way for new ones beyond `MAX_PROGRAMS`.
    monkeypatch.setattr(_jit._FlatDispatch, "MAX_PROGRAMS", 2)
    f(m, x, 5, None)
    assert len(f._flat._programs) == 2 and traces[-1] == ("a", 5, (5,))
    f(m, x, 3, None)  # made again: its program was dropped
    assert traces[-1] == ("a", 3, (5,)) and len(f._flat._programs) == 2
    # `has_program`: whether a call would reuse a program (not trace a new one).
    assert f.has_program(m, 2 * x, 3, None)
    assert not f.has_program(m, x, 6, None) and not f.has_program(m, x[:2], 3, None)
    assert len(traces) == 6  # asking traces nothing
    # The same as `eqx.filter_jit`, as a nested call inside the user's `jit` gives.
    nested = jax.jit(lambda m, x: f(m, x, 3, None)["y"])(m, x)
    np.testing.assert_allclose(f(m, x, 3, None)["y"], nested, rtol=1e-6)


def test_array_leaves_are_told_apart_as_equinox_does():
    import equinox as eqx

    def check(x):
        assert _jit._is_array(x) == eqx.is_array(x), type(x)
        assert _jit._is_array(x) == eqx.is_array(x), type(x)  # the remembered answer

    for x in (jnp.ones(2), np.ones(2), np.float32(1.0), np.asarray(True), 1.0, 2, True, None):
        check(x)
    check("text")
    check(jnp.sin)
    jax.jit(lambda x: check(x) or x)(jnp.ones(2))  # a tracer is an array leaf
    arrays, template = _jit._split([jnp.ones(2), 1.0, np.ones(3), "a"])
    assert [a.shape for a in arrays] == [(2,), (3,)]
    assert template == (_jit._ARRAY, 1.0, _jit._ARRAY, "a")


def test_planner_calls_keep_equinox_runtime_errors():
    import equinox as eqx

    @_jit.filter_jit(planner=True)
    def checked(x):
        return eqx.error_if(x, x < 0, "x must not be negative")

    np.testing.assert_allclose(checked(jnp.asarray(1.0)), 1.0)
    with pytest.raises(eqx.EquinoxRuntimeError, match="x must not be negative"):
        checked(jnp.asarray(-1.0))
