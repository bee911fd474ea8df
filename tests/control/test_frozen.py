"""`tie` keeps a computation that does not depend on a loop's carry inside the loop,
where XLA's loop-invariant code motion would run it before the loop (checked on the
compiled program's HLO)."""

import re

import jax
import jax.numpy as jnp
import pytest

from toolkit.control._planner.frozen import at_most_once, tie


def _computations(hlo: str) -> dict[str, str]:
    """The compiled module's computations by name (the entry's as `ENTRY`)."""
    out = {}
    for block in re.split(r"\n(?=\S)", hlo):
        head = block.split("\n", 1)[0]
        match = re.match(r"(ENTRY )?%?([\w.\-]+)", head)
        if match and head.rstrip().endswith("{"):
            out["ENTRY" if match.group(1) else match.group(2)] = block
    return out


def _reachable(computations: dict[str, str], root: str) -> set[str]:
    """The computations that `root` calls, directly or not, and `root` itself."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in computations:
            continue
        seen.add(name)
        body = computations[name].split("\n", 1)[-1]
        todo += re.findall(r"(?:calls|body|condition|to_apply)=%?([\w.\-]+)", body)
        for group in re.findall(r"branch_computations=\{([^}]*)\}", body):
            todo += [n.strip().lstrip("%") for n in group.split(",")]
    return seen


def _sine_inside_loop(tied: bool) -> bool:
    def f(a, n):
        def body(c):
            t, c = tie(a, c) if tied else (a, c)
            # Depends on `a` alone (without `tie`): loop-invariant.
            return c + jnp.sum(jnp.sin(t) @ jnp.cos(t))

        return jax.lax.while_loop(lambda c: c < n, body, jnp.zeros((), a.dtype))

    return _sine_inside_the_loop_of(f, jnp.ones((8, 8)), 0.0)


def _sine_inside_the_loop_of(f, *inputs) -> bool:
    hlo = jax.jit(f).lower(*inputs).compile().as_text()
    computations = _computations(hlo)
    loop = re.search(r" while\(.*body=%?([\w.\-]+)", hlo)
    assert loop is not None, "the program has no while loop"
    inside = _reachable(computations, loop.group(1))
    with_sine = {n for n, text in computations.items() if re.search(r" sine\(", text)}
    assert with_sine, "no sine in the compiled program"
    return bool(with_sine & inside)


def test_tie_keeps_a_loop_invariant_computation_inside_the_loop():
    if _sine_inside_loop(tied=False):
        pytest.skip("this XLA does not hoist loop-invariant code out of while loops")
    assert _sine_inside_loop(tied=True)


def test_tie_returns_its_inputs():
    tree = {"a": jnp.arange(3.0), "f": jnp.sin, "n": 2}
    tied, x = jax.jit(tie)({"a": tree["a"]}, jnp.asarray(1.5))
    assert jnp.array_equal(tied["a"], tree["a"]) and x == 1.5
    out, _ = tie(tree, jnp.zeros(()))
    assert out["f"] is jnp.sin and out["n"] == 2


def _sine_sum(a):
    return jnp.sum(jnp.sin(a) @ jnp.cos(a))


def test_at_most_once_computes_where_needed_and_keeps_the_work_in_its_loop():
    a = jnp.arange(64.0).reshape(8, 8) / 64
    once = jax.jit(lambda needed: at_most_once(needed, _sine_sum, jnp.asarray(-1.0), a))
    assert once(jnp.asarray(True)) == pytest.approx(float(_sine_sum(a)))
    assert once(jnp.asarray(False)) == -1.0
    # Batched: the computed value where needed, the default elsewhere.
    batched = jax.vmap(lambda needed, d: at_most_once(needed, _sine_sum, d, a))
    out = batched(jnp.asarray([False, True, False]), jnp.asarray([-1.0, -2.0, -3.0]))
    assert out.tolist() == pytest.approx([-1.0, float(_sine_sum(a)), -3.0])

    # Its work depends on `a` alone, yet is not run before the loop, where it would
    # be paid at every call (XLA hoists it out of the batched loop without `tie`).
    def batched_matrix(a, needed):
        def one(n):
            return at_most_once(n, lambda t: jnp.sin(t) @ jnp.cos(t), jnp.zeros((8, 8)), a)

        return jax.vmap(one)(needed)

    assert _sine_inside_the_loop_of(batched_matrix, a, jnp.asarray([True, False]))
