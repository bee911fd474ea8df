import json
import os
import socket
import subprocess
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from toolkit import control
from toolkit.control._kkt import KKTResidual


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8):
    """Whether two pytrees have the same structure and allclose leaves."""
    lx, tx = jax.tree_util.tree_flatten(x)
    ly, ty = jax.tree_util.tree_flatten(y)
    if tx != ty:
        return False
    return all(
        np.shape(a) == np.shape(b)
        and np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)
        for a, b in zip(lx, ly)
    )


def central_difference(fn, x, direction, eps):
    """(fn(x + eps d) - fn(x - eps d)) / (2 eps) for pytrees x, d."""
    plus = jax.tree_util.tree_map(lambda a, d: a + eps * d, x, direction)
    minus = jax.tree_util.tree_map(lambda a, d: a - eps * d, x, direction)
    return (fn(plus) - fn(minus)) / (2 * eps)


def richardson_difference(fn, x, direction, eps):
    """Fourth-order central difference (Richardson extrapolation of two step sizes)."""
    d1 = central_difference(fn, x, direction, eps)
    d2 = central_difference(fn, x, direction, eps / 2)
    return (4 * d2 - d1) / 3


def relative_error(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


def host_callbacks(jaxpr, inside: str = "") -> list[str]:
    """The host-callback primitives (`pure_callback`, `io_callback`, `debug_callback`)
    in a jaxpr and every jaxpr nested in it, restricted to the bodies of the calls whose
    name contains `inside` (all of them if empty); each as 'primitive at source'."""
    from jax._src import source_info_util
    from jax.extend.core import ClosedJaxpr, Jaxpr

    found = []

    def walk(jaxpr, active):
        for eqn in jaxpr.eqns:
            if active and "callback" in eqn.primitive.name:
                where = source_info_util.summarize(eqn.source_info)
                found.append(f"{eqn.primitive.name} at {where}")
            name = str(eqn.params.get("name", ""))
            for param in eqn.params.values():
                for sub in param if isinstance(param, tuple | list) else (param,):
                    if isinstance(sub, ClosedJaxpr):
                        sub = sub.jaxpr
                    if isinstance(sub, Jaxpr):
                        walk(sub, active or (bool(inside) and inside in name))

    walk(jaxpr.jaxpr if isinstance(jaxpr, ClosedJaxpr) else jaxpr, not inside)
    return found


def cost_gradient_error(ex, tr, name, eps):
    """Relative error of the implicit gradient of a library problem's optimal cost
    w.r.t. `args[name]`, against a central finite difference."""

    def cost(args):
        return control.plan(ex.problem, tr, args=args).cost

    g = jax.grad(cost)(ex.args)
    direction = jax.tree_util.tree_map(jnp.zeros_like, ex.args)
    direction[name] = jnp.array(1.0)
    fd = central_difference(cost, ex.args, direction, eps)
    return relative_error(g[name], fd)


def fresh_process(code: str, env: dict[str, str], *argv: str) -> subprocess.Popen:
    """`python -c code *argv` in a new process on the CPU, with `env` added to ours
    (JAX reads XLA_FLAGS, and jax.distributed sets up, only when it starts)."""
    return fresh_command(["-c", code, *argv], env)


def fresh_command(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`python *argv` in a new process on the CPU, with `env` added to ours; an
    `XLA_FLAGS` of `env` comes after the suite's own (see tests/conftest.py)."""
    if "XLA_FLAGS" in env:
        suite = os.environ.get("TOOLKIT_TEST_XLA_FLAGS", "")
        env = {**env, "XLA_FLAGS": f"{suite} {env['XLA_FLAGS']}".strip()}
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    return subprocess.Popen(
        [sys.executable, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> str:
    """A TCP port on localhost that was free a moment ago (for a coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def finish(processes: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """Wait for `processes` (killing any still running after `timeout` s); each must
    exit with status 0. Returns the `(stdout, stderr)` of each."""
    try:
        outputs = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    return outputs


def last_json(stdout: str):
    """The JSON printed on the last line of `stdout`."""
    return json.loads(stdout.strip().splitlines()[-1])


class KKTCase(NamedTuple):
    """A library problem's KKT residual on its default trapezoidal grid, ready for a
    planner's `solve`."""

    ex: Any
    tr: Any
    residual: Any
    problem_args: tuple
    w0: Any
    adjoint: Any

    def solve(self, planner):
        return planner.solve(
            self.residual, self.w0, self.problem_args, self.tr.linear_solver(), self.adjoint
        )


def kkt_case(name: str) -> KKTCase:
    """`KKTCase` of the library problem `name`, from its default guess."""
    ex = control.problems.get(name)
    tr = control.Trapezoidal(ex.N)
    residual = KKTResidual(tr)
    problem_args = (ex.problem, ex.args)
    w0 = residual.initial_guess(*problem_args)
    return KKTCase(ex, tr, residual, problem_args, w0, optx.ImplicitAdjoint(tr.linear_solver()))
