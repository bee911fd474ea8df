"""A griffe extension for the reference site: toolkit's classes document their
arguments at runtime (`Cls.__init__.__doc__ = \"\"\"**Arguments:** ...\"\"\"`, as
equinox does), which griffe's static analysis does not see. This reads each class's
own `__init__` docstring from the imported class and appends it to the class's."""

import importlib

import griffe


class InitDocstrings(griffe.Extension):
    def on_class(self, *, cls: griffe.Class, **kwargs) -> None:
        try:
            obj = getattr(importlib.import_module(cls.module.path), cls.name)
        except (ImportError, AttributeError):
            return
        init = vars(obj).get("__init__")
        doc = getattr(init, "__doc__", None)
        if not doc or "**Arguments:**" not in doc:
            return
        if cls.docstring is None:
            cls.docstring = griffe.Docstring(doc, parent=cls)
        elif doc.strip() not in cls.docstring.value:
            cls.docstring = griffe.Docstring(cls.docstring.value + "\n\n" + doc.strip(), parent=cls)
