"""The service's settings: one object, read once from ``SCORING_*`` app settings.

Example:
    >>> Settings.from_env({"SCORING_MODEL_PATH": "models/mnist.model.json"}).key_cache_entries
    64
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from .parameters import DEFAULT_PARAMETERS, CkksParameters

ENV_PREFIX = "SCORING_"
# Azure Functions refuses request bodies over 100 MB and answers HTTP after 230 s; batches
# stay below both: the body under 95 MB, the work under a few seconds.
DEFAULT_MAX_BATCH_REQUEST_BYTES = 95_000_000
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Settings:
    """Service settings; :meth:`from_env` reads them once, with the ``SCORING_`` prefix.

    Attributes:
        model_path: ``SCORING_MODEL_PATH``, an exported artifact or a joblib pickle.
        input_bound: ``SCORING_INPUT_BOUND``, for pickles: the largest ``|x_i|`` accepted.
        key_cache_entries: ``SCORING_KEY_CACHE_ENTRIES``, parsed bundles kept (LRU).
        key_revalidate_seconds: ``SCORING_KEY_REVALIDATE_SECONDS``: a cached bundle is used
            without asking storage for this long; then storage is asked whether it still
            exists. A deletion elsewhere takes effect within this bound (at once in the
            worker process that served the DELETE).
        zero_pool_depth: ``SCORING_ZERO_POOL_DEPTH``, masked encryptions of zero prepared
            ahead per cached bundle and result ciphertext (0: none, all on the request path).
        zero_pool_bundles: ``SCORING_ZERO_POOL_BUNDLES``, bundles (most recently used) that
            get a pool; together with the depth this bounds the pools' memory.
        max_request_bytes: ``SCORING_MAX_REQUEST_BYTES``; 0 sizes it from the model.
        max_batch_request_bytes: ``SCORING_MAX_BATCH_REQUEST_BYTES``, the cap for batches
            (95 MB by default, below Azure Functions' 100 MB); 0 turns the batch path off.
        batch_skip_zero_features: ``SCORING_BATCH_SKIP_ZERO_FEATURES``: batches leave out
            features whose weights are all zero (fewer bytes), and the model description then
            names them.
        batch_max_records: ``SCORING_BATCH_MAX_RECORDS``, the most records one batch request
            may declare (and so disclose); 0 means every lane (N, 8,192).
    """

    model_path: str = ""
    input_bound: float | None = None
    key_cache_entries: int = 64
    key_revalidate_seconds: float = 60.0
    zero_pool_depth: int = 4
    zero_pool_bundles: int = 16
    max_request_bytes: int = 0
    max_batch_request_bytes: int = DEFAULT_MAX_BATCH_REQUEST_BYTES
    batch_skip_zero_features: bool = False
    batch_max_records: int = 0
    parameters: CkksParameters = DEFAULT_PARAMETERS

    def __post_init__(self) -> None:
        lanes = self.parameters.poly_modulus_degree
        if self.batch_max_records > lanes:  # refused at start, not by every request's model load
            raise ValueError(f"app setting {ENV_PREFIX}BATCH_MAX_RECORDS is {self.batch_max_records}; "
                             f"a batch has {lanes} lanes at most")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, base_dir: Path | None = None) -> Settings:
        """Read every ``SCORING_*`` setting once.

        Raises:
            ValueError: naming the setting whose value is not a number (or boolean) as needed.
        """
        env = os.environ if environ is None else environ
        values: dict = {}
        for spec in fields(cls):
            name = ENV_PREFIX + spec.name.upper()
            raw = env.get(name)
            if spec.name == "parameters" or raw is None or (raw == "" and spec.name != "model_path"):
                continue
            values[spec.name] = _parse(name, raw, spec.type)
        path = values.get("model_path", "")
        if path and base_dir is not None and not Path(path).is_absolute():
            values["model_path"] = str(base_dir / path)
        return cls(**values)


def _parse(name: str, raw: str, kind: str):
    try:
        if kind == "bool":
            if raw.strip().lower() not in TRUE + FALSE:
                raise ValueError(raw)
            return raw.strip().lower() in TRUE
        if kind == "int":
            value = int(raw)
        elif kind in ("float", "float | None"):
            value = float(raw)
        else:
            return raw
    except ValueError as exc:
        raise ValueError(f"app setting {name} must be a {kind.split(' ')[0]}, not {raw!r}") from exc
    if value < 0:
        raise ValueError(f"app setting {name} must not be negative")
    return value
