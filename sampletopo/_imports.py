"""Import paths ``"pkg.module:attribute"``: how a model factory or a data loader of the user's own
is named on the command line and in a run's ``config.toml``.

Holds :func:`is_import_path`, :func:`import_object` (the object a path names, or one error
saying which part failed and what to do) and :func:`import_path_of` (the path that names an
object, when importing it gives the object back), plus :func:`check_toml_value` for the options
stored beside a path. It knows nothing about models or datasets: :mod:`sampletopo.models` and
:mod:`sampletopo.data` call it.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from typing import Any

from sampletopo._errors import ParameterError
from sampletopo._validation import invalid

__all__ = ["check_toml_value", "import_object", "import_path_of", "is_import_path"]

# "pkg.module:attr" or "pkg.module:Outer.attr"; a Windows drive ("C:\\x") or a file name with a
# colon has a slash, backslash or dot-free module part that this refuses.
_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

PYTHONPATH_FIX = (
    "The module must be importable from where the command runs: install its package "
    "(pip install -e .) or add its folder to PYTHONPATH (e.g. PYTHONPATH=$PWD)."
)


def is_import_path(value: Any) -> bool:
    """Whether ``value`` reads as ``"pkg.module:attribute"``.

    >>> is_import_path("mypkg.nets:make_net"), is_import_path("resnet20"), is_import_path("a/b.npz")
    (True, False, False)
    """
    return isinstance(value, str) and bool(_PATH.match(value))


def import_object(spec: str, *, param: str, where: str | None, what: str, kind: str) -> Any:
    """The object ``spec`` (``"pkg.module:attribute"``) names.

    Raises :class:`ParameterError` naming the path and the part that failed: a module that
    does not import (with the import's own error), or a module without that attribute (with
    the public names it does have).
    """
    if not is_import_path(spec):
        raise invalid(
            param,
            f"an import path 'pkg.module:name' naming {what}",
            spec,
            where=where,
            kind=kind,
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ParameterError(
            f"The {param!r} {kind}{' of ' + where if where else ''} names {spec!r}, but module "
            f"{module_name!r} does not import ({type(exc).__name__}: {exc}). {PYTHONPATH_FIX}",
            parameter=param,
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise ParameterError(
            f"The {param!r} {kind}{' of ' + where if where else ''} names {spec!r}, but importing "
            f"module {module_name!r} raised {type(exc).__name__}: {exc}. Fix the module first.",
            parameter=param,
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))
            shown = ", ".join(public[:12]) + (" ..." if len(public) > 12 else "")
            raise ParameterError(
                f"The {param!r} {kind}{' of ' + where if where else ''} names {spec!r}, but "
                f"module {module_name!r} has no {attr!r}. Names it has: {shown or 'none'}.",
                parameter=param,
            )
        obj = getattr(obj, part)
    return obj


def import_path_of(obj: Any) -> str | None:
    """``"module:qualname"`` of a class or function when importing that path gives ``obj``
    back; ``None`` for objects defined in ``__main__``, inside functions, or not importable.

    >>> from collections import OrderedDict
    >>> import_path_of(OrderedDict)
    'collections:OrderedDict'
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<locals>" in qualname:
        return None
    path = f"{module}:{qualname}"
    if not is_import_path(path):
        return None
    try:
        found = import_object(path, param="model", where=None, what="an object", kind="parameter")
    except ParameterError:
        return None
    return path if found is obj else None


def check_toml_value(name: str, value: Any, *, where: str, kind: str = "option") -> None:
    """Refuse an option value that a ``config.toml`` cannot store and give back the same: what
    is stored must be str, int, float, bool, or lists and tables of them (no ``None``, no
    objects, no NaN, which TOML writes but equality would never match)."""
    if isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if math.isnan(value):
            raise invalid(name, "a number (not NaN)", value, where=where, kind=kind)
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            check_toml_value(name, v, where=where, kind=kind)
        return
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        for v in value.values():
            check_toml_value(name, v, where=where, kind=kind)
        return
    raise invalid(
        name,
        "a value a config.toml can store: a str, int, float or bool, or a list or table of them",
        value,
        where=where,
        kind=kind,
        fix="Leave out options that are None (the factory's default applies), and pass objects "
        "by building them inside your factory from plain options.",
    )
