"""Function keys, enforced as the Functions host enforces them when keys are configured.

Off by default, as ``func start`` leaves it locally. With keys (``LocalFunctionsHost(keys=...)``
or ``python -m devhost --keys-file keys.json``), an HTTP function's ``authLevel`` is honoured
as by azure-functions-host (src/WebJobs.Script.WebHost/Security/...):

* the key is the ``x-functions-key`` header, else the ``code`` query parameter (the header wins
  when present, even if empty) -- AuthenticationLevelHandler.cs;
* the master key grants ``admin`` level: valid on every function; a host key grants
  ``function`` level on every function; a function key only on its own function --
  SecretManager.cs GetAuthorizationLevelAsync;
* ``anonymous`` functions need no key (a wrong one is ignored); ``function`` functions need a
  function-level key or the master key; ``admin`` functions need the master key --
  AuthUtility.cs PrincipalHasAuthLevelClaim;
* otherwise the host answers ``401`` with an empty body (UnauthorizedResult) --
  FunctionInvocationMiddleware.cs.

Keys file (JSON; every part optional; key values are strings)::

    {
      "master": "<master key>",
      "host": {"default": "<host key>", "<name>": "<another host key>"},
      "functions": {"<function name>": {"default": "<function key>"}}
    }

Keys are compared in constant time and never logged.
"""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

KEY_HEADER = "x-functions-key"  # AuthenticationLevelHandler.FunctionsKeyHeaderName
KEY_QUERY = "code"  # AuthenticationLevelHandler.FunctionsKeyQueryParamName

ANONYMOUS, FUNCTION, ADMIN = "anonymous", "function", "admin"


class KeysError(ValueError):
    """The keys configuration is malformed (the message never holds a key)."""


def _named_keys(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise KeysError(f"{where} must be an object of key name -> key value")
    out = {}
    for name, key in value.items():
        if not isinstance(key, str) or not key:
            raise KeysError(f"{where}.{name} must be a non-empty string")
        out[str(name)] = key
    return out


@dataclass(frozen=True)
class Keys:
    """The configured keys (see the module doc for the file format)."""

    master: Optional[str] = None
    host: dict[str, str] = field(default_factory=dict)
    functions: dict[str, dict[str, str]] = field(default_factory=dict)  # lower-case function name

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Keys":
        if not isinstance(data, Mapping):
            raise KeysError("the keys must be a JSON object")
        unknown = set(data) - {"master", "host", "functions"}
        if unknown:
            raise KeysError(f"unknown keys section(s) {sorted(unknown)}; expected master, host, functions")
        master = data.get("master")
        if master is not None and (not isinstance(master, str) or not master):
            raise KeysError("master must be a non-empty string")
        functions = data.get("functions") or {}
        if not isinstance(functions, Mapping):
            raise KeysError("functions must be an object of function name -> {key name: key value}")
        return cls(master=master, host=_named_keys(data.get("host") or {}, "host"),
                   functions={str(name).lower(): _named_keys(keys, f"functions.{name}")
                              for name, keys in functions.items()})

    @classmethod
    def load(cls, source: "Keys | Mapping[str, Any] | str | Path") -> "Keys":
        """From a :class:`Keys`, a mapping, or the path of a JSON keys file."""
        if isinstance(source, Keys):
            return source
        if isinstance(source, (str, Path)):
            try:
                data = json.loads(Path(source).read_text(encoding="utf-8-sig"))
            except ValueError as exc:
                raise KeysError(f"{source} is not valid JSON ({exc.msg}, line {getattr(exc, 'lineno', '?')})") from None
            return cls.from_mapping(data)
        return cls.from_mapping(source)

    def level_of(self, key: str, function_name: str) -> tuple[Optional[str], str]:
        """(key name, level) a key grants on ``function_name``: SecretManager.cs order."""
        if self.master and hmac.compare_digest(key.encode(), self.master.encode()):
            return "_master", ADMIN
        for name, value in self.host.items():
            if hmac.compare_digest(key.encode(), value.encode()):
                return name, FUNCTION
        for name, value in self.functions.get(function_name.lower(), {}).items():
            if hmac.compare_digest(key.encode(), value.encode()):
                return name, FUNCTION
        return None, ANONYMOUS


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> Optional[str]:
    """AuthenticationLevelHandler.cs: the header if present, else the first ``code`` value."""
    if KEY_HEADER in headers:
        return headers[KEY_HEADER].split(",")[0]
    if KEY_QUERY in query:
        return query[KEY_QUERY].split(",")[0]
    return None


def authorized(keys: Optional[Keys], auth_level: str, function_name: str, key: Optional[str]) -> bool:
    """Whether a request may invoke the function (always, when no keys are configured)."""
    if keys is None or auth_level == ANONYMOUS:
        return True
    if not key:
        return False
    _name, granted = keys.level_of(key, function_name)
    if granted == ADMIN:
        return True
    return granted == auth_level  # AuthUtility.cs: a function-level claim for function level
