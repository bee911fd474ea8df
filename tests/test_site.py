"""The API reference site (tutorials/site): every public name of the packages has its
`::: name` entry, so that mkdocstrings renders it with its docstring. The build itself
(`mkdocs build --strict`) runs in CI."""

import importlib
import pathlib
import types

import pytest


PAGES = pathlib.Path(__file__).resolve().parents[1] / "tutorials" / "site" / "pages"
PACKAGES = {
    "toolkit": "compilation.md",
    "toolkit.control": "control.md",
    "toolkit.control.learning": "learning.md",
    "toolkit.control.problems": "problems.md",
    "toolkit.pruning": "pruning.md",
    "toolkit.nn": "nn.md",
    "toolkit.data": "data.md",
}


def _public(module: types.ModuleType) -> set[str]:
    names = set()
    for name in dir(module):
        if name.startswith("_") or name in ("TYPE_CHECKING", "importlib"):
            continue
        if not isinstance(getattr(module, name), types.ModuleType):
            names.add(name)
    return names


@pytest.mark.parametrize("package", list(PACKAGES))
def test_every_public_name_is_in_the_reference(package):
    module = importlib.import_module(package)
    page = (PAGES / PACKAGES[package]).read_text()
    entries = {
        line.removeprefix(f"::: {package}.").strip()
        for line in page.splitlines()
        if line.startswith(f"::: {package}.")
    }
    missing = _public(module) - entries
    assert not missing, f"{package}: add `::: {package}.<name>` to {PACKAGES[package]}"
    modules = {e for e in entries if isinstance(getattr(module, e, None), types.ModuleType)}
    unknown = {e for e in entries if "." not in e} - _public(module) - modules
    assert not unknown, f"{PACKAGES[package]} documents names {package} lacks: {unknown}"
