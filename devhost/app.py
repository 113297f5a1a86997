"""Front side: the app folder's settings, and HTTP functions described from worker metadata.

As in the Functions host, the front never imports the app: a worker indexes it
(devhost.indexing) and sends each function's raw binding JSON; the front reads routes,
methods, auth levels and bindings from that (the host's FunctionMetadata), and resolves the
``%SETTING%`` parts of binding properties once, at start.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from .bindings import BlobBinding, UnresolvedSetting, resolve_settings
from .indexing import parse_raw_binding
from .routing import RouteTemplate

log = logging.getLogger("devhost")

DEFAULT_FUNCTION_TIMEOUT = 30 * 60.0  # ScriptJobHostOptionsSetup.cs DefaultFunctionTimeout (non-Consumption)


class AppLoadError(RuntimeError):
    """The app could not be loaded, or declares something the host or worker would reject."""


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP-triggered function, as the host sees it from the worker's metadata."""

    name: str
    route: RouteTemplate  # full template, route prefix included
    methods: Optional[frozenset[str]]  # None: every method
    auth_level: str  # "anonymous", "function" or "admin"
    trigger_name: str
    response_name: str  # "$return" or the name of an http output parameter
    blobs: tuple[BlobBinding, ...]
    unsupported: tuple[str, ...]  # "type name" of bindings devhost cannot resolve


# -- app folder files ------------------------------------------------------------------------
def read_host_json(app_dir: Path) -> dict[str, Any]:
    host_json = app_dir / "host.json"
    if not host_json.exists():
        log.warning("%s not found; using the defaults (route prefix 'api')", host_json)
        return {}
    try:
        config = json.loads(host_json.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise AppLoadError(f"{host_json} is not valid JSON: {exc}") from exc
    return config if isinstance(config, dict) else {}


def read_route_prefix(app_dir: Path) -> str:
    """``extensions.http.routePrefix`` from host.json (default ``api``)."""
    prefix = read_host_json(app_dir).get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$")


def read_function_timeout(app_dir: Path) -> Optional[float]:
    """host.json ``functionTimeout`` in seconds (``-1``: none); default 30 minutes."""
    value = read_host_json(app_dir).get("functionTimeout")
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT
    if str(value).strip() == "-1":
        return None
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise AppLoadError(f"host.json functionTimeout {value!r} is not a timespan like 00:05:00")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


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


# -- function descriptions --------------------------------------------------------------------
def _lower(value: Any) -> str:
    return str(value or "").lower()


def describe(metadata: Mapping[str, Any], route_prefix: str, environ: Mapping[str, str]
             ) -> Optional[HttpFunction]:
    """The :class:`HttpFunction` of one indexed function, or None if it is not HTTP-triggered.

    Raises :class:`UnresolvedSetting` (with the function named by the caller) when a
    ``%SETTING%`` of a blob binding has no value.
    """
    name = metadata["name"]
    bindings = [parse_raw_binding(raw) for raw in metadata["raw_bindings"]]
    trigger = next((b for b in bindings if _lower(b.get("type")) == "httptrigger"), None)
    if trigger is None:
        return None
    response_name, blobs, unsupported = "$return", [], []
    for binding in bindings:
        if binding is trigger:
            continue
        kind, direction = _lower(binding.get("type")), _lower(binding.get("direction"))
        if kind == "http" and direction == "out":
            response_name = binding["name"]
        elif kind == "blob" and direction in ("in", "out"):
            properties = {k.lower(): v for k, v in (binding.get("properties") or {}).items()}
            data_type = binding.get("datatype")
            blobs.append(BlobBinding(
                name=binding["name"],
                path=resolve_settings(str(binding.get("path") or ""), environ),
                connection=resolve_settings(str(binding.get("connection") or ""), environ),
                direction=direction,
                data_type=None if data_type in (None, "UNDEFINED") else str(data_type).upper(),
                deferred=direction == "in" and bool(properties.get("supportsdeferredbinding"))))
        else:
            unsupported.append(f"{binding.get('type')} {binding.get('name')}")
    methods = trigger.get("methods")
    route = str(trigger.get("route") or name).strip("/")
    return HttpFunction(
        name=name,
        route=RouteTemplate(f"{route_prefix}/{route}" if route_prefix else route),
        methods=frozenset(str(m).upper() for m in methods) if methods else None,
        auth_level=_lower(trigger.get("authlevel") or "function"),
        trigger_name=trigger["name"],
        response_name=response_name,
        blobs=tuple(blobs),
        unsupported=tuple(unsupported),
    )


def describe_all(metadata: list[Mapping[str, Any]], route_prefix: str,
                 environ: Mapping[str, str]) -> list[HttpFunction]:
    """Every HTTP function, in route precedence order; fails on unresolved settings.

    The host marks a function whose binding names an unset ``%SETTING%`` as in error at
    start-up ("The 'name' function is in error: '%SETTING%' does not resolve to a value."); the
    dev host refuses to start instead, naming every such function and setting.
    """
    functions, errors = [], []
    for entry in metadata:
        try:
            function = describe(entry, route_prefix, environ)
        except UnresolvedSetting as exc:
            errors.append(f"The '{entry['name']}' function is in error: {exc}")
            continue
        if function is None:
            log.info("skipping %s: only HTTP-triggered functions are served by devhost", entry["name"])
        else:
            functions.append(function)
    if errors:
        raise AppLoadError("; ".join(errors))
    return sorted(functions, key=lambda f: f.route.precedence)
