"""Worker side: import the app and index it as the Python language worker does.

A port of what azure-functions-python-worker 4.34 does for the v2 programming model, run inside
each devhost worker process (never in the front):

* ``loader.index_function_app``: import ``function_app`` (``PYTHON_SCRIPT_FILE_NAME``) with the
  app folder first on ``sys.path``; exactly one top-level ``FunctionApp``; ``get_functions()``.
* ``functions.Registry.add_indexed_function``: the load-time checks of parameters against
  bindings, annotations included, refused with the worker's own ``FunctionLoadError`` messages.
* ``loader.get_fx_raw_bindings``: the function metadata sent to the host (raw binding JSON,
  with ``SupportsDeferredBinding`` from the base extension for SDK-type bindings).

Annotation checks use the converters of the ``azure.functions`` library and of
``azurefunctions-extensions-base`` (the registries the worker itself consults), with the
worker's ``GenericBinding`` for ``str``/``bytes`` annotations.
"""
from __future__ import annotations

import collections.abc
import importlib
import inspect
import json
import operator
import os
import re
import sys
import typing
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NamedTuple, Optional

HTTP_TRIGGER = "httpTrigger"  # azure_functions_worker/constants.py
HTTP = "http"
SCRIPT_FILE_SETTING = "PYTHON_SCRIPT_FILE_NAME"  # azure_functions_worker/constants.py
DEFAULT_SCRIPT_FILE = "function_app.py"


class FunctionLoadError(RuntimeError):
    """The worker refuses a function (azure_functions_worker/functions.py)."""

    def __init__(self, function_name: str, msg: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {msg}")


class AppIndexError(RuntimeError):
    """The app cannot be imported or indexed (azure_functions_worker/loader.py)."""


# -- typing_inspect, as vendored by the worker (azure_functions_worker/_thirdparty) ------------
def is_generic_type(tp: Any) -> bool:  # _thirdparty/typing_inspect.py is_generic_type (3.9+)
    return ((isinstance(tp, type) and issubclass(tp, typing.Generic))  # type: ignore[arg-type]
            or (isinstance(tp, (typing._GenericAlias, typing._SpecialGenericAlias))  # type: ignore[attr-defined]
                and tp.__origin__ not in (typing.Union, tuple, typing.ClassVar, collections.abc.Callable)))


def get_origin(tp: Any) -> Any:  # _thirdparty/typing_inspect.py get_origin
    if isinstance(tp, typing._GenericAlias):  # type: ignore[attr-defined]
        return tp.__origin__ if tp.__origin__ is not typing.ClassVar else None
    if tp is typing.Generic:
        return typing.Generic
    return None


def get_args(tp: Any) -> tuple:  # _thirdparty/typing_inspect.py get_args
    if isinstance(tp, typing._GenericAlias):  # type: ignore[attr-defined]
        res = tp.__args__
        if get_origin(tp) is collections.abc.Callable and res[0] is not Ellipsis:
            res = (list(res[:-1]), res[-1])
        return res
    return ()


# -- binding registries (azure_functions_worker/bindings/meta.py, generic.py) -------------------
class GenericBinding:
    """azure_functions_worker/bindings/generic.py: ``str``/``bytes`` parameters of any binding."""

    @classmethod
    def has_trigger_support(cls) -> bool:
        return False

    @classmethod
    def check_input_type_annotation(cls, pytype: type) -> bool:
        return issubclass(pytype, (str, bytes))

    @classmethod
    def check_output_type_annotation(cls, pytype: type) -> bool:
        return issubclass(pytype, (str, bytes, bytearray))

    @classmethod
    def encode(cls, obj: Any, *, expected_type: Optional[type]) -> Any:
        from azure.functions.meta import Datum

        if isinstance(obj, str):
            return Datum(type="string", value=obj)
        if isinstance(obj, (bytes, bytearray)):
            return Datum(type="bytes", value=bytes(obj))
        if obj is None:
            return Datum(type=None, value=obj)
        if isinstance(obj, dict):
            return Datum(type="dict", value=obj)
        if isinstance(obj, list):
            return Datum(type="list", value=obj)
        if isinstance(obj, int):
            return Datum(type="int", value=obj)
        if isinstance(obj, float):
            return Datum(type="double", value=obj)
        if isinstance(obj, bool):
            return Datum(type="bool", value=obj)
        raise NotImplementedError

    @classmethod
    def decode(cls, data: Any, *, trigger_metadata: Any) -> Any:
        if data is None:
            return None
        if data.type in ("string", "bytes", "json"):
            return data.value
        if data.type is None:
            return None
        raise ValueError(f'unexpected type of data received for the "generic" binding : {data.type!r}')

    @classmethod
    def has_implicit_output(cls, bind_name: Optional[str]) -> bool:
        return bind_name != "durableClient"


def _registry() -> Any:
    import azure.functions as func

    return func.get_binding_registry()


def _deferred_registry() -> Any:
    try:  # loaded by the worker at init for Python 3.8+ (bindings/meta.py load_binding_registry)
        import azurefunctions.extensions.base as clients
    except ImportError:
        return None
    return clients.get_binding_registry()


def get_binding(bind_name: str, is_deferred_binding: bool = False) -> Any:  # bindings/meta.py get_binding
    binding = None
    if not is_deferred_binding:
        binding = _registry().get(bind_name)
    else:
        registry = _deferred_registry()
        binding = registry.get(bind_name) if registry is not None else None
    return binding if binding is not None else GenericBinding


def has_implicit_output(bind_name: str) -> bool:  # bindings/meta.py has_implicit_output
    binding = get_binding(bind_name)
    if binding is GenericBinding:
        return GenericBinding.has_implicit_output(bind_name)
    return getattr(binding, "has_implicit_output", lambda: False)()


def check_input_type_annotation(bind_name: str, pytype: type, is_deferred: bool) -> bool:
    return get_binding(bind_name, is_deferred).check_input_type_annotation(pytype)  # bindings/meta.py


def check_output_type_annotation(bind_name: str, pytype: type) -> bool:
    return get_binding(bind_name).check_output_type_annotation(pytype)  # bindings/meta.py


def check_deferred_bindings_enabled(param_anno: Any, enabled: bool) -> tuple[bool, bool]:  # bindings/meta.py
    registry = _deferred_registry()
    if registry is not None and registry.check_supported_type(param_anno):
        return True, True
    return enabled, False


# -- the function registry (azure_functions_worker/functions.py) -------------------------------
class ParamTypeInfo(NamedTuple):
    binding_name: str
    pytype: Optional[type]
    deferred_bindings_enabled: bool = False


class FunctionInfo(NamedTuple):
    func: Callable[..., Any]
    name: str
    directory: str
    function_id: str
    requires_context: bool
    is_async: bool
    has_return: bool
    is_http_func: bool
    deferred_bindings_enabled: bool
    input_types: dict[str, ParamTypeInfo]
    output_types: dict[str, ParamTypeInfo]
    return_type: Optional[ParamTypeInfo]
    trigger_param: Optional[str]


def _direction(binding: Any) -> str:
    """``binding.direction`` is the BindingDirection value (0 in, 1 out, 2 inout), as in protos."""
    value = getattr(binding.direction, "value", binding.direction)
    return {0: "IN", 1: "OUT", 2: "INOUT"}.get(value, str(value)).upper()


def _is_out_annotation(param_anno: Any) -> bool:
    if is_generic_type(param_anno):
        origin = get_origin(param_anno)
        if origin is not None:
            return isinstance(origin, type) and origin.__name__ == "Out"
    return isinstance(param_anno, type) and param_anno.__name__ == "Out"


def _validate_param(param: inspect.Parameter, binding: Any, annotations: dict, func_name: str,
                    fx_deferred: bool, input_types: dict, output_types: dict) -> bool:
    """One parameter of functions.py Registry.validate_function_params (its loop body)."""
    param_has_anno = param.name in annotations
    param_anno = annotations.get(param.name)
    fx_deferred, is_deferred = check_deferred_bindings_enabled(param_anno, fx_deferred)
    is_param_out = param_has_anno and _is_out_annotation(param_anno)
    is_binding_out = _direction(binding) == "OUT"
    if is_param_out:
        args = get_args(param_anno)
        if len(args) != 1:
            raise FunctionLoadError(func_name, f"binding {param.name} has invalid Out annotation {param_anno!r}")
        param_py_type = args[0]
        if isinstance(param_py_type, tuple) and is_generic_type(param_py_type[0]):
            param_py_type = operator.getitem(param_py_type[0], *param_py_type[1:])
    else:
        param_py_type = param_anno
    if (param_has_anno and not isinstance(param_py_type, type)
            and not is_generic_type(param_py_type)):
        raise FunctionLoadError(func_name, f"binding {param.name} has invalid non-type annotation {param_anno!r}")
    if is_binding_out and param_has_anno and not is_param_out:
        raise FunctionLoadError(func_name, f'binding {param.name} is declared to have the "out" '
                                "direction, but its annotation in Python is not "
                                "a subclass of azure.functions.Out")
    if not is_binding_out and is_param_out:
        raise FunctionLoadError(func_name, f'binding {param.name} is declared to have the "in" '
                                "direction in function.json, but its annotation "
                                "is azure.functions.Out in Python")
    if param_has_anno and param_py_type in (str, bytes) and not has_implicit_output(binding.type):
        param_bind_type = "generic"
    else:
        param_bind_type = binding.type
    if param_has_anno:
        if is_param_out:
            checks_out = check_output_type_annotation(param_bind_type, param_py_type)
        else:
            checks_out = check_input_type_annotation(param_bind_type, param_py_type, is_deferred)
        if not checks_out:
            type_name = getattr(param_py_type, "__name__", repr(param_py_type))
            # functions.py compares ``binding.data_type is not protos.BindingInfo.undefined``
            # (0): in the v2 model data_type is None or the DataType value, so only
            # UNDEFINED takes the second message.
            if binding.data_type != 0:
                raise FunctionLoadError(func_name, f'{param.name!r} binding type "{binding.type}" '
                                        f'and dataType "{binding.data_type}" in '
                                        "function.json do not match the corresponding function "
                                        f"parameter's Python type annotation \"{type_name}\"")
            raise FunctionLoadError(func_name, f"type of {param.name} binding in function.json "
                                    f'"{binding.type}" does not match its Python annotation "{type_name}"')
    info = ParamTypeInfo(param_bind_type, param_py_type, is_deferred)
    (output_types if is_binding_out else input_types)[param.name] = info
    return fx_deferred


def validate_function_params(params: dict, bound_params: dict, annotations: dict, func_name: str
                             ) -> tuple[dict, dict, bool]:
    """functions.py Registry.validate_function_params, message for message."""
    if set(params) - set(bound_params):
        raise FunctionLoadError(func_name, "the following parameters are declared in Python but "
                                f"not in function.json: {set(params) - set(bound_params)!r}")
    if set(bound_params) - set(params):
        raise FunctionLoadError(func_name, "the following parameters are declared in function.json but "
                                f"not in Python: {set(bound_params) - set(params)!r}")
    input_types: dict[str, ParamTypeInfo] = {}
    output_types: dict[str, ParamTypeInfo] = {}
    fx_deferred = False
    for param in params.values():
        try:
            fx_deferred = _validate_param(param, bound_params[param.name], annotations, func_name,
                                          fx_deferred, input_types, output_types)
        except FunctionLoadError:
            raise
        except Exception as exc:  # e.g. TypeError from a converter's issubclass(): named here
            raise FunctionLoadError(func_name, f"the annotation {annotations.get(param.name)!r} of parameter "
                                    f"{param.name} cannot be checked: {type(exc).__name__}: {exc}") from exc
    return input_types, output_types, fx_deferred


def _return_type(annotations: dict, has_explicit_return: bool, has_implicit_return: bool,
                 binding_name: Optional[str], func_name: str) -> Optional[ParamTypeInfo]:
    """functions.py Registry.get_function_return_type."""
    return_pytype = None
    if has_explicit_return and "return" in annotations:
        return_anno = annotations.get("return")
        if is_generic_type(return_anno) and get_origin(return_anno).__name__ == "Out":
            raise FunctionLoadError(func_name, "return annotation should not be azure.functions.Out")
        return_pytype = return_anno
        if not isinstance(return_pytype, type):
            raise FunctionLoadError(func_name, f"has invalid non-type return annotation {return_pytype!r}")
        if not check_output_type_annotation(binding_name or "", return_pytype):
            raise FunctionLoadError(func_name, f'Python return annotation "{return_pytype.__name__}" '
                                    f'does not match binding type "{binding_name}"')
    if has_implicit_return and "return" in annotations:
        return_pytype = annotations.get("return")
    if has_explicit_return or has_implicit_return:
        return ParamTypeInfo(binding_name or "", return_pytype)
    return None


def add_indexed_function(function: Any) -> FunctionInfo:
    """functions.py Registry.add_indexed_function: validate one indexed function."""
    func = function.get_user_function()
    func_name = function.get_function_name()
    params = dict(inspect.signature(func).parameters)
    annotations = typing.get_type_hints(func)
    bound_params: dict[str, Any] = {}
    has_explicit_return = has_implicit_return = explicit_set = False
    return_binding_name: Optional[str] = None
    for binding in function.get_bindings():
        direction = _direction(binding)
        if direction == "INOUT":
            raise FunctionLoadError(func_name, '"inout" bindings are not supported')
        if binding.name == "$return" and direction != "OUT":
            raise FunctionLoadError(func_name, '"$return" binding must have direction set to "out"')
        if binding.name == "$return":
            has_explicit_return = True
        elif has_implicit_output(binding.type):
            has_implicit_return = True
            bound_params[binding.name] = binding
        else:
            bound_params[binding.name] = binding
        if not explicit_set:  # functions.py get_return_binding
            if binding.name == "$return":
                return_binding_name, explicit_set = binding.type, True
            elif has_implicit_output(binding.type):
                return_binding_name = binding.type
    requires_context = False
    if "context" in params and "context" not in bound_params:  # functions.py is_context_required
        requires_context = True
        params.pop("context")
        if "context" in annotations:
            ctx_anno = annotations.get("context")
            if not isinstance(ctx_anno, type) or ctx_anno.__name__ != "Context":
                raise FunctionLoadError(func_name, 'the "context" parameter is expected to be of '
                                        f"type azure.functions.Context, got {ctx_anno!r}")
    input_types, output_types, deferred = validate_function_params(params, bound_params, annotations, func_name)
    return_type = _return_type(annotations, has_explicit_return, has_implicit_return,
                               return_binding_name, func_name)
    trigger_param = next((name for name, info in input_types.items() if info.binding_name == HTTP_TRIGGER), None)
    return FunctionInfo(
        func=func, name=func_name, directory=str(Path(inspect.getfile(func)).parent),
        function_id=str(uuid.uuid5(uuid.NAMESPACE_OID, func_name)), requires_context=requires_context,
        is_async=inspect.iscoroutinefunction(func), has_return=has_explicit_return or has_implicit_return,
        is_http_func=trigger_param is not None, deferred_bindings_enabled=deferred,
        input_types=input_types, output_types=output_types, return_type=return_type,
        trigger_param=trigger_param)


def raw_bindings(function: Any, info: FunctionInfo) -> list[str]:
    """loader.py get_fx_raw_bindings: the binding JSON the worker sends to the host."""
    if info.deferred_bindings_enabled:
        registry = _deferred_registry()
        bindings, _logs = registry.get_raw_bindings(function, info.input_types)
        return list(bindings)
    return list(function.get_raw_bindings())


# -- loading the app (azure_functions_worker/loader.py, dispatcher.py) ------------------------
_SCRIPT_NAME = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_\-]*\.py$")  # utils/common.py validate_script_file_name


def script_file_name(explicit: Optional[str] = None) -> str:
    """``PYTHON_SCRIPT_FILE_NAME`` (default ``function_app.py``), validated as the worker does."""
    name = explicit or os.environ.get(SCRIPT_FILE_SETTING) or DEFAULT_SCRIPT_FILE
    if not _SCRIPT_NAME.match(name):
        raise AppIndexError(f"Invalid file name: {name}")
    return name


def import_app_module(app_dir: Path, script_file: str) -> ModuleType:
    """loader.py index_function_app: ``importlib.import_module`` with the app folder first."""
    if str(app_dir) in sys.path:
        sys.path.remove(str(app_dir))
    sys.path.insert(0, str(app_dir))
    if not (app_dir / script_file).exists():
        raise AppIndexError(f"{script_file} was not found in {app_dir}")
    return importlib.import_module(Path(script_file).stem)


def find_app(module: ModuleType, attribute: Optional[str] = None) -> Any:
    """loader.py index_function_app: the one top-level FunctionRegister of the module."""
    from azure.functions import FunctionRegister

    if attribute:  # devhost extension: choose one explicitly
        app = getattr(module, attribute, None)
        if not isinstance(app, FunctionRegister):
            raise AppIndexError(f"{module.__name__}.{attribute} is not a FunctionApp")
        return app
    app = None
    for name in module.__dir__():
        candidate = getattr(module, name, None)
        if isinstance(candidate, FunctionRegister):
            if app is not None:
                raise AppIndexError(f"More than one {app.__class__.__name__} or other top level "
                                    "function app instances are defined.")
            app = candidate
    if app is None:
        raise AppIndexError(f"Could not find top level function app instances in {module.__name__}.py.")
    return app


def index(app_dir: Path, script_file: str, attribute: Optional[str] = None
          ) -> tuple[dict[str, tuple[Any, FunctionInfo]], list[dict[str, Any]]]:
    """Import and index the app; return the registry (by name) and the metadata for the host."""
    module = import_app_module(app_dir, script_file)
    functions = find_app(module, attribute).get_functions()
    registry: dict[str, tuple[Any, FunctionInfo]] = {}
    metadata = []
    for function in functions:
        info = add_indexed_function(function)
        registry[info.name] = (function, info)
        metadata.append({"name": info.name, "function_id": info.function_id,
                         "raw_bindings": raw_bindings(function, info),
                         "is_async": info.is_async})
    return registry, metadata


def parse_raw_binding(raw: str) -> dict[str, Any]:
    """One raw binding as the host reads it (JSON, property names case-insensitive)."""
    return {key.lower(): value for key, value in json.loads(raw).items()}
