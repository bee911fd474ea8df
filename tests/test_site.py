"""The API reference site (tutorials/site): every public name of the packages has its
`::: name` entry, so that mkdocstrings renders it with its docstring. The build itself
(`mkdocs build --strict`) runs in CI."""

import importlib
import importlib.util
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


def test_the_site_shows_argument_lists_set_at_runtime():
    # `Cls.__init__.__doc__ = "**Arguments:** ..."` is invisible to griffe's static
    # analysis; the site's extension appends it to the class's docstring.
    griffe = pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("init_docs", PAGES.parent / "init_docs.py")
    init_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(init_docs)
    extensions = griffe.load_extensions(init_docs.InitDocstrings())
    presets = griffe.load("toolkit.control._planner.presets", extensions=extensions)
    doc = presets["KKTNewton"].docstring.value
    assert doc.startswith("Solve the KKT conditions") and "`max_backtracks`" in doc
    assert "`interior_point_first`" in presets["KKTLeastSquares"].docstring.value
