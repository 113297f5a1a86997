"""The data plane every host calls: bytes in, bytes out.

A host (the Azure Functions app, the Azure ML entry script) only moves bytes between its
transport and these methods, and maps a :class:`~scoring.errors.ScoringError` to its
status and JSON body in one place. Nothing here knows about Azure.

Example:
    >>> service = ScoringService(Settings(model_path="mnist.model.json"))  # doctest: +SKIP
    >>> body, content_type = service.score(key_id, bundle_bytes, request_body, "application/json")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import tenseal.sealapi as seal

from . import protocol
from .ckks import (
    DEFAULT_PARAMETERS,
    BlobError,
    CkksParameters,
    canonical_ciphertext,
    ciphertext_blob_size,
    runtime,
)
from .bulk import BulkKernel
from .bundles import BundleCache, BundleSource, InlineBundle
from .errors import (
    BadRequest,
    CiphertextRejected,
    KeysNotFound,
    ModelMismatch,
    PayloadTooLarge,
    ServiceUnavailable,
)
from .kernel import CoefficientKernel
from .keys import PublicBundle, check_key_id, load_bundle
from .model import LinearModel, ModelError, load_model

logger = logging.getLogger(__name__)

ENV_PREFIX = "SCORING_"
# Azure Functions refuses request bodies over 100 MB and answers HTTP after 230 s; batches
# stay below both: the body under 95 MB, the work under about a minute on one core.
DEFAULT_MAX_BULK_REQUEST_BYTES = 95_000_000
MAX_BULK_PRODUCTS = 1_000_000  # (used features x outputs) scalar products per batch
BULK_LIMITS_MESSAGE = ("batch requests are capped at {cap} bytes, below Azure Functions' 100 MB request limit "
                       "(and the work per batch stays well under its 230 s response limit)")
KEYS_MISSING_MESSAGE = ("no key bundle is stored under key id {key_id}; upload the public keys first "
                        "(ScoringClient.upload_keys(), or PUT /api/keys/{key_id})")


@dataclass(frozen=True)
class Settings:
    """Service settings; :meth:`from_env` reads them once, with the ``SCORING_`` prefix.

    Attributes:
        model_path: ``SCORING_MODEL_PATH``, an exported artifact or a joblib pickle.
        input_bound: ``SCORING_INPUT_BOUND``, for pickles: the largest ``|x_i|`` accepted.
        key_cache_entries: ``SCORING_KEY_CACHE_ENTRIES``, parsed bundles kept (LRU).
        max_request_bytes: ``SCORING_MAX_REQUEST_BYTES``; 0 sizes it from the model.
        max_bulk_request_bytes: ``SCORING_MAX_BULK_REQUEST_BYTES``, the cap for batches
            (95 MB by default, below Azure Functions' 100 MB); 0 turns the bulk path off.
    """

    model_path: str = ""
    input_bound: float | None = None
    key_cache_entries: int = 64
    max_request_bytes: int = 0
    max_bulk_request_bytes: int = DEFAULT_MAX_BULK_REQUEST_BYTES
    parameters: CkksParameters = DEFAULT_PARAMETERS

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None, *, base_dir: Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        path = env.get(ENV_PREFIX + "MODEL_PATH", "")
        if path and base_dir is not None and not Path(path).is_absolute():
            path = str(base_dir / path)
        bound = env.get(ENV_PREFIX + "INPUT_BOUND")
        return cls(
            model_path=path,
            input_bound=float(bound) if bound else None,
            key_cache_entries=int(env.get(ENV_PREFIX + "KEY_CACHE_ENTRIES", cls.key_cache_entries)),
            max_request_bytes=int(env.get(ENV_PREFIX + "MAX_REQUEST_BYTES", cls.max_request_bytes)),
            max_bulk_request_bytes=int(env.get(ENV_PREFIX + "MAX_BULK_REQUEST_BYTES",
                                               cls.max_bulk_request_bytes)),
        )


class ScoringService:
    """Scores encrypted records with one linear model; built lazily, kept for the worker's life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundles = BundleCache(settings.key_cache_entries)
        self._kernel: CoefficientKernel | None = None
        self._bulk: BulkKernel | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def kernel(self) -> CoefficientKernel:
        """The model's kernel, built on first use (weights encoded once per worker).

        Raises:
            ServiceUnavailable: if no model is configured or it cannot be loaded.
        """
        if self._kernel is None:
            with self._lock:
                if self._kernel is None:
                    self._kernel = self._build_kernel()
        return self._kernel

    @property
    def bulk(self) -> BulkKernel | None:
        """The batch kernel, or None where a batch would not fit the request limits."""
        return self._bulk if self.kernel is not None else None

    def _build_kernel(self) -> CoefficientKernel:
        if not self.settings.model_path:
            raise ServiceUnavailable("no model is configured: set SCORING_MODEL_PATH")
        started = time.perf_counter()
        try:
            model = load_model(self.settings.model_path, input_bound=self.settings.input_bound)
            kernel = CoefficientKernel(model, runtime(self.settings.parameters))
            self._bulk = self._build_bulk(kernel)
        except (ModelError, ValueError) as exc:
            logger.error("cannot load model %s: %s", self.settings.model_path, exc)
            raise ServiceUnavailable("the model cannot be loaded; see the service log") from exc
        logger.info("model %s loaded (%s, %d features, %d outputs, hash %s) in %.0f ms",
                    Path(self.settings.model_path).name, model.estimator, model.n_features,
                    model.n_outputs, model.model_hash[:12], (time.perf_counter() - started) * 1e3)
        return kernel

    def _build_bulk(self, kernel: CoefficientKernel) -> BulkKernel | None:
        bulk = BulkKernel(kernel.model, kernel.rt)
        used = len(bulk.encoding.features)
        smallest = used * ciphertext_blob_size(kernel.rt, seeded=True)
        if used * kernel.model.n_outputs > MAX_BULK_PRODUCTS or smallest > self.settings.max_bulk_request_bytes:
            logger.info("no bulk path: %d features x %d outputs, %d bytes per batch at the least", used,
                        kernel.model.n_outputs, smallest)
            return None
        return bulk

    @property
    def model(self) -> LinearModel:
        return self.kernel.model

    def max_request_bytes(self) -> int:
        """The body cap: the largest legitimate JSON request plus a margin, unless configured."""
        if self.settings.max_request_bytes:
            return self.settings.max_request_bytes
        return self.kernel.layout.n_chunks * self._json_ciphertext_bytes() + 4096

    def max_bulk_request_bytes(self) -> int:
        """The cap for batch bodies: the largest legitimate batch, at most the configured cap."""
        if self.bulk is None:
            return 0
        largest = len(self.bulk.encoding.features) * self._json_ciphertext_bytes() + 4096
        return min(largest, self.settings.max_bulk_request_bytes)

    def _json_ciphertext_bytes(self) -> int:
        """One unseeded ciphertext in base64 with its JSON quotes and comma: the largest legitimate form."""
        return 4 * (ciphertext_blob_size(runtime(self.settings.parameters), seeded=False) + 2) // 3 + 4

    # -- endpoints -----------------------------------------------------------------------

    def health(self) -> dict:
        """Liveness plus whether the model is loaded; never loads it."""
        return {"status": "ok", "model_loaded": self._kernel is not None,
                "cached_key_bundles": len(self.bundles)}

    def describe(self) -> dict:
        """What a client needs to encrypt for this model; no weights."""
        kernel = self.kernel
        model = kernel.model
        return {
            "protocol_version": protocol.PROTOCOL_VERSION,
            "model_hash": model.model_hash,
            "estimator": model.estimator,
            "kind": model.kind,
            "n_features": model.n_features,
            "n_outputs": model.n_outputs,
            "classes": None if model.classes is None else list(model.classes),
            "proba": model.proba,
            "input_bound": model.to_artifact()["input_bound"],
            "encryption": {
                **kernel.rt.parameters.to_dict(),
                "encoding": "coefficient",
                "input_scale": kernel.input_scale,
                "output_scale": kernel.output_scale,
                "layout": kernel.layout.to_dict(),
            },
            "bulk": None if self.bulk is None else self.bulk.encoding.to_dict(),
            "limits": {"max_request_bytes": self.max_request_bytes(),
                       "max_bulk_request_bytes": self.max_bulk_request_bytes()},
        }

    def check_upload(self, key_id: str, body: bytes) -> bytes:
        """Check a bundle before it is stored under ``key_id``; return it unchanged.

        Raises:
            BadRequest: for a malformed key id.
            KeysRejected: if the bundle does not parse, holds a secret key, uses unserved
                parameters, or does not hash to ``key_id``.
        """
        check_key_id(key_id)
        load_bundle(body, key_id, served=(self.settings.parameters,))
        logger.info("key bundle %s accepted (%d bytes)", key_id[:12], len(body))
        return body

    def forget(self, key_id: str) -> None:
        """Drop a bundle from the cache (after it was deleted from storage)."""
        self.bundles.discard(check_key_id(key_id))

    def score(self, key_id: str, bundle: BundleSource | bytes | None, body: bytes,
              content_type: str | None) -> tuple[bytes, str]:
        """Score one encrypted request with the bundle stored under ``key_id``.

        Args:
            key_id: from the URL.
            bundle: where the stored bundle is (a BundleSource), or its bytes as the host
                read them, or None if none is stored.
            body: the request body.
            content_type: the request's Content-Type; the response uses the same form.

        Returns:
            The response body and its content type.

        Raises:
            ScoringError: a subclass naming the HTTP status for every refusal.
        """
        started = time.perf_counter()
        check_key_id(key_id)
        single_cap, bulk_cap = self.max_request_bytes(), self.max_bulk_request_bytes()
        if len(body) > max(single_cap, bulk_cap):
            raise PayloadTooLarge(self._too_large(len(body), single_cap, bulk_cap))
        message = protocol.decode(body, content_type, response=False)
        kernel = self.kernel
        if message.model_hash is not None and message.model_hash != kernel.model.model_hash:
            raise ModelMismatch(f"request was made for model {message.model_hash}; "
                                f"this service now serves {kernel.model.model_hash}")
        if message.records is None and len(body) > single_cap:
            raise PayloadTooLarge(f"request body is {len(body)} bytes; one record needs at most {single_cap}")
        public = self._bundle(key_id, bundle)
        if message.records is None:
            results = kernel.evaluate(self._ciphertexts(message, kernel), public.encryptor)
        else:
            results = self._bulk_results(message, public)
        reply = protocol.ScoreMessage(tuple(kernel.rt.save_canonical(r) for r in results),
                                      kernel.model.model_hash, message.records)
        binary = protocol.media_type(content_type) == protocol.BINARY_TYPE or (
            not content_type and body[:4] == protocol.REQUEST_MAGIC)
        out, out_type = protocol.encode(reply, binary=binary, response=True)
        logger.info("scored for key %s: %d bytes in, %d bytes out, %.2f ms", key_id[:12], len(body),
                    len(out), (time.perf_counter() - started) * 1e3)
        return out, out_type

    @staticmethod
    def _too_large(size: int, single_cap: int, bulk_cap: int) -> str:
        if not bulk_cap:
            return f"request body is {size} bytes; the limit is {single_cap}"
        return f"request body is {size} bytes; " + BULK_LIMITS_MESSAGE.format(cap=bulk_cap)

    def _bulk_results(self, message: protocol.ScoreMessage, public: PublicBundle) -> list[seal.Ciphertext]:
        bulk = self.bulk
        if bulk is None:
            raise BadRequest("this model has no batch path (its batches would not fit the request "
                             "limits); send one record per request")
        encoding = bulk.encoding
        if message.records > encoding.max_records:
            raise BadRequest(f"a batch holds at most {encoding.max_records} records, not {message.records}")
        if len(message.ciphertexts) != len(encoding.features):
            raise CiphertextRejected(f"a batch for this model takes {len(encoding.features)} ciphertexts "
                                     f"(one per feature with a nonzero weight), not {len(message.ciphertexts)}")
        columns = [self._load(blob, encoding.input_scale, f"ciphertext {i}")
                   for i, blob in enumerate(message.ciphertexts)]
        return bulk.evaluate(columns, public.encryptor)

    def _load(self, blob: bytes, scale: float, what: str) -> seal.Ciphertext:
        rt = runtime(self.settings.parameters)
        try:
            ciphertext = rt.load(seal.Ciphertext(),
                                 canonical_ciphertext(rt, blob, scale=scale, seeded_ok=True, what=what))
        except BlobError as exc:
            raise CiphertextRejected(str(exc)) from exc
        except (RuntimeError, ValueError) as exc:
            raise CiphertextRejected(f"{what} is not valid for the served parameters") from exc
        if ciphertext.is_transparent():  # SEAL would refuse to multiply it
            raise CiphertextRejected(f"{what} has a zero second part: it encrypts nothing")
        return ciphertext

    def _bundle(self, key_id: str, source: BundleSource | bytes | None) -> PublicBundle:
        if source is None or isinstance(source, bytes):
            source = InlineBundle(source)
        if self.bundles.contains(key_id):
            version = source.version()
            cached = None if version is None else self.bundles.get(key_id, version)
            if cached is not None:
                return cached
        stored = source.read()
        if stored is None:
            self.bundles.discard(key_id)
            raise KeysNotFound(KEYS_MISSING_MESSAGE.format(key_id=key_id))
        data, version = stored
        bundle = load_bundle(data, key_id, served=(self.settings.parameters,))
        self.bundles.put(version, bundle)
        return bundle

    def _ciphertexts(self, message: protocol.ScoreMessage, kernel: CoefficientKernel) -> list[seal.Ciphertext]:
        expected = kernel.layout.n_chunks
        if len(message.ciphertexts) != expected:
            raise CiphertextRejected(f"this model takes {expected} ciphertext(s) per record "
                                     f"({kernel.model.n_features} features), not {len(message.ciphertexts)}")
        return [self._load(blob, kernel.input_scale, f"ciphertext {i}") for i, blob in enumerate(message.ciphertexts)]
