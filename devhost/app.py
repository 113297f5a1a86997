"""Load an Azure Functions Python v2 app and describe its HTTP functions from its own metadata.

Everything served comes from what the app declares through the ``azure.functions`` decorators
(``app.get_functions()``, each function's trigger and bindings); nothing is restated by hand.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
import typing
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import azure.functions as func
from azure.functions.decorators.core import BindingDirection

from .bindings import BlobBinding
from .routing import RouteTemplate

log = logging.getLogger("devhost")

# FunctionApp.get_functions() may be called only once per app object in azure-functions 1.26:
# a second call fails its duplicate-name check. Cache the result per app.
_FUNCTIONS: "weakref.WeakKeyDictionary[func.FunctionRegister, list]" = weakref.WeakKeyDictionary()


class AppLoadError(RuntimeError):
    """The app could not be loaded or declares something the worker would reject."""


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP-triggered function, as declared by the app."""

    name: str
    route: RouteTemplate  # full template, route prefix included
    methods: Optional[frozenset[str]]  # None: every method
    auth_level: str
    trigger_name: str
    response_name: str  # "$return" or the name of an http output parameter
    blobs: tuple[BlobBinding, ...]
    unsupported: tuple[str, ...]  # "type name" of bindings devhost cannot resolve
    user_function: Callable[..., Any]
    annotations: dict[str, Any]
    wants_context: bool


# -- app folder files ------------------------------------------------------------------------
def read_route_prefix(app_dir: Path) -> str:
    """``extensions.http.routePrefix`` from host.json (default ``api``)."""
    host_json = app_dir / "host.json"
    if not host_json.exists():
        log.warning("%s not found; using route prefix 'api'", host_json)
        return "api"
    try:
        config = json.loads(host_json.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise AppLoadError(f"{host_json} is not valid JSON: {exc}") from exc
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


def apply_local_settings(app_dir: Path) -> list[str]:
    """Copy ``Values`` of local.settings.json into ``os.environ`` for keys not already set.

    An explicitly set environment variable wins over local.settings.json, so a developer or a
    test can override one setting without editing the file. Returns the names that were set.
    """
    path = app_dir / "local.settings.json"
    if not path.exists():
        return []
    try:
        settings = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise AppLoadError(f"{path} is not valid JSON: {exc}") from exc
    if settings.get("IsEncrypted"):
        log.warning("%s is encrypted; its values are ignored", path)
        return []
    applied = []
    for key, value in (settings.get("Values") or {}).items():
        if key not in os.environ and value is not None:
            os.environ[key] = str(value)
            applied.append(key)
    log.info("local.settings.json: %d setting(s) applied (explicit environment variables win)",
             len(applied))
    return applied


# -- module and app ------------------------------------------------------------------------
def load_module(app_dir: Path, module_name: str = "function_app") -> ModuleType:
    """Execute ``<app_dir>/<module_name>.py`` (or package) as module ``module_name``.

    ``app_dir`` is put first on ``sys.path`` (as the worker does) so the app's own imports work.
    If another module of that name is already loaded, it is restored afterwards.
    """
    location = app_dir / f"{module_name}.py"
    if not location.exists():
        location = app_dir / module_name / "__init__.py"
    if not location.exists():
        raise AppLoadError(f"no {module_name}.py in {app_dir}")
    if str(app_dir) in sys.path:
        sys.path.remove(str(app_dir))
    sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location(module_name, location)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        if previous is not None:
            sys.modules[module_name] = previous
    return module


def find_app(module: ModuleType, attribute: Optional[str] = None) -> func.FunctionRegister:
    """The app object: ``module.<attribute>``, else ``module.app``, else the only one."""
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, func.FunctionRegister):
            raise AppLoadError(f"{module.__name__}.{attribute} is not a FunctionApp")
        return app
    if isinstance(getattr(module, "app", None), func.FunctionRegister):
        return module.app
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(f"expected one FunctionApp in {module.__name__}, found {len(apps)}")
    return apps[0]


def functions_of(app: func.FunctionRegister) -> list[func.Function]:
    """``app.get_functions()``, called at most once per app object."""
    if app not in _FUNCTIONS:
        _FUNCTIONS[app] = app.get_functions()
    return _FUNCTIONS[app]


# -- function descriptions --------------------------------------------------------------------
def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _data_type(binding: Any) -> Optional[str]:
    value = binding.get_dict_repr().get("dataType")
    return None if value is None else str(getattr(value, "name", value)).upper()


def _type_hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: use the raw annotations
        return {name: p.annotation for name, p in inspect.signature(function).parameters.items()
                if p.annotation is not inspect.Parameter.empty}


def describe(function: func.Function, route_prefix: str) -> HttpFunction:
    """Build the :class:`HttpFunction` of an HTTP-triggered function from its metadata."""
    trigger = function.get_trigger()
    name = function.get_function_name()
    response_name, blobs, unsupported = "$return", [], []
    for binding in function.get_bindings():
        if binding is trigger:
            continue
        outgoing = binding.direction == BindingDirection.OUT.value
        if binding.type == "http" and outgoing:
            response_name = binding.name
        elif binding.type == "blob" and binding.direction in (BindingDirection.IN.value,
                                                              BindingDirection.OUT.value):
            blobs.append(BlobBinding(name=binding.name, path=binding.path,
                                     connection=binding.connection or "",
                                     direction="out" if outgoing else "in",
                                     data_type=_data_type(binding)))
        else:
            unsupported.append(f"{binding.type} {binding.name}")
    methods = getattr(trigger, "methods", None)
    user_function = function.get_user_function()
    _check_parameters(name, user_function, trigger.name, response_name, blobs, unsupported)
    return HttpFunction(
        name=name,
        route=RouteTemplate(f"{route_prefix}/{(trigger.route or name).strip('/')}"),
        methods=frozenset(_enum_value(m).upper() for m in methods) if methods else None,
        auth_level=_enum_value(getattr(trigger, "auth_level", None) or "function"),
        trigger_name=trigger.name,
        response_name=response_name,
        blobs=tuple(blobs),
        unsupported=tuple(unsupported),
        user_function=user_function,
        annotations=_type_hints(user_function),
        wants_context="context" in inspect.signature(user_function).parameters,
    )


def _check_parameters(name: str, user_function: Callable[..., Any], trigger_name: str,
                      response_name: str, blobs: list[BlobBinding], unsupported: list[str]) -> None:
    """Reject mismatches between bindings and parameters, as the Python worker does."""
    parameters = inspect.signature(user_function).parameters
    declared = {trigger_name, *(b.name for b in blobs), *(u.split(" ", 1)[1] for u in unsupported)}
    if response_name != "$return":
        declared.add(response_name)
    missing = sorted(declared - set(parameters))
    extra = sorted(p for p, spec in parameters.items()
                   if p not in declared and p != "context" and spec.default is inspect.Parameter.empty
                   and spec.kind not in (spec.VAR_KEYWORD, spec.VAR_POSITIONAL))
    if missing or extra:
        raise AppLoadError(f"function {name}: bindings without a parameter {missing}, "
                           f"parameters without a binding {extra}")


def load_http_functions(app_dir: Path, module_name: str = "function_app",
                        attribute: Optional[str] = None) -> tuple[ModuleType, list[HttpFunction]]:
    """Import the app and describe its HTTP functions (other triggers are skipped, logged)."""
    module = load_module(app_dir, module_name)
    app = find_app(module, attribute)
    prefix = read_route_prefix(app_dir)
    described = []
    for function in functions_of(app):
        trigger = function.get_trigger()
        if trigger is None or trigger.type != "httpTrigger":
            log.info("skipping %s: %s triggers are not served by devhost",
                     function.get_function_name(), getattr(trigger, "type", "no"))
            continue
        described.append(describe(function, prefix))
    return module, described
