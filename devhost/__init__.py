"""Local development host for an Azure Functions Python v2 app, plus a managed Azurite.

* :class:`LocalFunctionsHost` (devhost.host) serves the app's HTTP functions with their blob
  bindings, as declared by the app's decorators.
* :class:`Azurite` / :func:`ensure_installed` (devhost.azurite) run a real Azurite blob service.

Names are imported lazily so ``python -m devhost.azurite`` runs without a runpy warning.
"""
from typing import Any

__all__ = ["Azurite", "LocalFunctionsHost", "ensure_installed"]


def __getattr__(name: str) -> Any:
    if name in ("Azurite", "ensure_installed"):
        from . import azurite
        return getattr(azurite, name)
    if name == "LocalFunctionsHost":
        from .host import LocalFunctionsHost
        return LocalFunctionsHost
    raise AttributeError(f"module 'devhost' has no attribute {name!r}")
