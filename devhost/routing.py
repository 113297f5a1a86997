"""Route templates of HTTP-triggered functions (a small subset of ASP.NET Core routing).

Supported, segment by segment: literals (case-insensitive), ``{name}`` (one segment, no
slash), ``{name:constraint}`` (``int``, ``long``, ``alpha``, ``bool``, ``guid``, ``double``,
``float``, ``decimal`` are enforced; other constraints are ignored), ``{name?}`` / ``{name=x}``
in the last segment (optional), ``{*name}`` in the last segment (catch-all, may contain
slashes), and mixed segments such as ``{name}.{ext}``. Captured values are percent-decoded.
"""
from __future__ import annotations

import re
from typing import Optional
from urllib.parse import unquote

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?:true|false)",
    "guid": r"\{?[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}\}?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_ANY_SEGMENT = r"[^/]+"
_PARAM = re.compile(r"\{(\*{0,2})([A-Za-z_][\w-]*)((?::[^{}:?=]+)*)(=[^{}]*)?(\?)?\}")

# Precedence ranks of a segment kind (lower wins), roughly as ASP.NET Core orders routes.
_LITERAL, _CONSTRAINED, _PARAMETER, _OPTIONAL, _CATCH_ALL = range(5)


class RouteTemplate:
    """A compiled route template; :meth:`match` returns the route parameters or ``None``."""

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.names: list[str] = []
        ranks: list[int] = []
        segments = self.template.split("/") if self.template else []
        pattern = "".join(self._segment(seg, i == len(segments) - 1, ranks)
                          for i, seg in enumerate(segments))
        self.precedence = tuple(ranks)
        self._regex = re.compile(pattern + r"/?", re.IGNORECASE)

    def _segment(self, segment: str, last: bool, ranks: list[int]) -> str:
        whole = _PARAM.fullmatch(segment)
        if whole and whole.group(1):  # {*rest}: the remaining path, slashes included
            if not last:
                raise ValueError(f"catch-all parameter must be the last segment: {self.template!r}")
            self.names.append(whole.group(2))
            ranks.append(_CATCH_ALL)
            return r"(?:/(.*))?"
        if whole and (whole.group(4) or whole.group(5)) and last:  # {name?} or {name=default}
            self.names.append(whole.group(2))
            ranks.append(_OPTIONAL)
            return rf"(?:/({self._value_regex(whole.group(3))}))?"
        rank, body = _LITERAL, ""
        position = 0
        for param in _PARAM.finditer(segment):
            body += re.escape(segment[position:param.start()])
            value_regex = self._value_regex(param.group(3))
            self.names.append(param.group(2))
            body += f"({value_regex})"
            rank = max(rank, _PARAMETER if value_regex == _ANY_SEGMENT else _CONSTRAINED)
            position = param.end()
        body += re.escape(segment[position:])
        ranks.append(rank)
        return "/" + body

    @staticmethod
    def _value_regex(constraints: str) -> str:
        for name in filter(None, (constraints or "").split(":")):
            if name.lower() in _CONSTRAINTS:
                return _CONSTRAINTS[name.lower()]
        return _ANY_SEGMENT

    def match(self, path: str) -> Optional[dict[str, str]]:
        """Match a raw URL path (``/api/...``); return decoded route parameters or ``None``."""
        found = self._regex.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in zip(self.names, found.groups())
                if value is not None}
