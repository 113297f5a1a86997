"""Masking of secrets in text that devhost logs (front and workers alike)."""
from __future__ import annotations

import re

_SECRET = re.compile(r"(?i)\b(sig|accountkey|sharedaccesssignature|code|x-functions-key)=[^&;\s'\"]+")
_QUERY = re.compile(r"\?[^\s'\"]*")


def redact(text: str) -> str:
    """Mask account keys, SAS signatures and function keys that may appear in ``text``."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=REDACTED", text)


def without_query(text: str) -> str:
    """``text`` with every query string (``?...``) cut to ``?...``: keys travel in ``code=``."""
    return _QUERY.sub("?...", text)
