"""Local development host for an Azure Functions Python v2 app, plus a managed Azurite.

* :class:`LocalFunctionsHost` (devhost.host) serves the app's HTTP functions as the Functions
  host and its Python worker processes would (devhost/README.md).
* :class:`Azurite` / :func:`ensure_installed` (devhost.azurite) run a real Azurite blob service.
* :func:`free_port` / :func:`port_or_free` (devhost.processes) pick local TCP ports.

Names are imported lazily so ``python -m devhost.azurite`` runs without a runpy warning.
"""
from typing import Any

__all__ = ["Azurite", "LocalFunctionsHost", "ensure_installed", "free_port", "port_or_free"]


def __getattr__(name: str) -> Any:
    if name in ("Azurite", "ensure_installed"):
        from . import azurite
        return getattr(azurite, name)
    if name == "LocalFunctionsHost":
        from .host import LocalFunctionsHost
        return LocalFunctionsHost
    if name in ("free_port", "port_or_free"):
        from . import processes
        return getattr(processes, name)
    raise AttributeError(f"module 'devhost' has no attribute {name!r}")
