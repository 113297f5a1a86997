"""Everything a host reads from its app settings, once, at start; misconfiguration fails the start.

The core's ``SCORING_*`` settings (:class:`scoring.settings.Settings`), the keys' storage
connection (``SCORING_STORAGE`` by the one rule of :mod:`keystore.connection`) and the keys
container (``SCORING_KEYS_CONTAINER``: required wherever storage is, on every route and
host; there is no default, so that no route quietly uses another container than the
bindings).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from keystore.connection import KEYS_CONTAINER_SETTING, ConfigurationError, StorageConnection, check_container_name
from scoring.settings import Settings

STORAGE_SETTING = "SCORING_STORAGE"  # the connection setting name every host and binding uses


@dataclass(frozen=True)
class HostSettings:
    """A host's settings: the core's, and where key bundles are stored.

    Attributes:
        storage: the keys' storage connection, or None (the container without storage takes
            bundles inline only).
        keys_container: the container of key bundles, set exactly when ``storage`` is.
    """

    scoring: Settings
    storage: StorageConnection | None
    keys_container: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, base_dir: Path | None = None,
                 require_storage: bool) -> HostSettings:
        """Read every setting once.

        Raises:
            ConfigurationError: naming the setting that is missing or cannot be honoured.
        """
        env = os.environ if environ is None else environ
        try:
            scoring = Settings.from_env(env, base_dir=base_dir)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        storage = StorageConnection.from_env(STORAGE_SETTING, env)
        container = env.get(KEYS_CONTAINER_SETTING) or None
        if storage is None and require_storage:
            raise ConfigurationError(f"app setting {STORAGE_SETTING} is not set (a connection string, or "
                                     f"{STORAGE_SETTING}__serviceUri for a managed identity): the key bundles' "
                                     "storage")
        if storage is None and container is not None:
            raise ConfigurationError(f"app setting {KEYS_CONTAINER_SETTING} is set but {STORAGE_SETTING} is not: "
                                     "set both, or neither (bundles then come inline)")
        if storage is not None:
            container = check_container_name(KEYS_CONTAINER_SETTING, container)
        return cls(scoring, storage, container)
