"""The data plane every host calls: typed messages in, typed messages out.

A host turns its transport into a :class:`~scoring.protocol.ScoreRequest` with the codec
(:func:`scoring.protocol.read_request`), calls :meth:`ScoringService.score`, and encodes the
:class:`~scoring.protocol.ScoreResponse` back; it maps a :class:`~scoring.errors.ScoringError`
to its status and JSON body in one place. Nothing here knows about Azure.

Example:
    >>> service = ScoringService(Settings(model_path="mnist.model.json"))  # doctest: +SKIP
    >>> service.load()                                                       # doctest: +SKIP
    >>> response = service.score(key_id, bundle_bytes, request)              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import tenseal.sealapi as seal

from . import ownership
from .bundles import BundleCache, BundleSource, InlineBundle
from .ckks import BlobError, SealRuntime, canonical_ciphertext, ciphertext_blob_size, runtime
from .errors import BadRequest, CiphertextRejected, KeysNotFound, KeysRejected, ModelMismatch, ServiceUnavailable
from .keys import BUNDLE_NAME_MESSAGE, PublicBundle, check_key_id, key_id_of, load_bundle
from .kernels.lanes import LaneKernel
from .kernels.masking import flood_bound
from .kernels.single import CoefficientKernel
from .loading import load_model
from .model import LinearModel, ModelError
from .pools import ZeroPools
from .protocol import BatchPath, Limits, ModelDescription, ScoreRequest, ScoreResponse, SinglePath
from .settings import Settings

logger = logging.getLogger(__name__)

MAX_BATCH_PRODUCTS = 1_000_000  # (sent features x outputs) scalar products per batch: seconds, not minutes
KEYS_MISSING_MESSAGE = ("no key bundle is stored under key id {key_id}; upload the public keys first "
                        "(ScoringClient.upload_keys(), or PUT /api/keys/{key_id})")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: its kernels, its description and its pools of masked zeros."""

    model: LinearModel
    single: CoefficientKernel
    lanes: LaneKernel | None
    description: ModelDescription
    pools: ZeroPools

    @property
    def rt(self) -> SealRuntime:
        return self.single.rt


class ScoringService:
    """Scores encrypted records with one linear model; loaded once, kept for the worker's life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundles = BundleCache(settings.key_cache_entries, settings.key_revalidate_seconds)
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def load(self, model: LinearModel | None = None, *, single: CoefficientKernel | None = None) -> LoadedModel:
        """Load the configured model (or ``model``, or the kernel ``single``) and encode it; once.

        Raises:
            ServiceUnavailable: if no model is configured or it cannot be loaded.
        """
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._build(model, single)
        return self._loaded

    @property
    def loaded(self) -> LoadedModel:
        """The loaded model, loading it on first use (the hosts' lazy initialization)."""
        return self._loaded or self.load()

    def _build(self, model: LinearModel | None, single: CoefficientKernel | None) -> LoadedModel:
        started = time.perf_counter()
        source = "the given model"
        try:
            if single is None:
                if model is None:
                    if not self.settings.model_path:
                        raise ServiceUnavailable("no model is configured: set SCORING_MODEL_PATH")
                    source = Path(self.settings.model_path).name
                    model = load_model(self.settings.model_path, input_bound=self.settings.input_bound)
                single = CoefficientKernel(model, runtime(self.settings.parameters))
            model = single.model
            lanes = self._build_lanes(single)
        except (ModelError, ValueError) as exc:
            logger.error("cannot load model %s: %s", source, exc)
            raise ServiceUnavailable("the model cannot be loaded; see the service log") from exc
        pools = ZeroPools(single, depth=self.settings.zero_pool_depth, max_bundles=self.settings.zero_pool_bundles)
        loaded = LoadedModel(model, single, lanes, self._describe(single, lanes), pools)
        logger.info("model %s loaded (%s, %d features, %d outputs, hash %s) in %.0f ms", source, model.estimator,
                    model.n_features, model.n_outputs, model.model_hash[:12], (time.perf_counter() - started) * 1e3)
        return loaded

    def _build_lanes(self, single: CoefficientKernel) -> LaneKernel | None:
        cap = self.settings.max_batch_request_bytes
        if not cap:
            return None
        lanes = LaneKernel(single.model, single.rt, skip_zero_features=self.settings.batch_skip_zero_features,
                           max_records=self.settings.batch_max_records)
        sent = len(lanes.encoding.features)
        smallest = sent * ciphertext_blob_size(single.rt, seeded=True)
        if sent * single.model.n_outputs > MAX_BATCH_PRODUCTS or smallest > cap:
            logger.info("no batch path: %d features x %d outputs, %d bytes per batch at the least", sent,
                        single.model.n_outputs, smallest)
            return None
        return lanes

    def _describe(self, single: CoefficientKernel, lanes: LaneKernel | None) -> ModelDescription:
        model = single.model
        json_ciphertext = 4 * (ciphertext_blob_size(single.rt, seeded=False) + 2) // 3 + 4  # quotes and comma
        max_request = self.settings.max_request_bytes or single.layout.n_chunks * json_ciphertext + 4096
        batch, max_batch = None, 0
        if lanes is not None:
            enc = lanes.encoding
            features = None if len(enc.features) == model.n_features else enc.features
            batch = BatchPath(enc.max_records, features, enc.input_scale, enc.output_scale,
                              flood_bound(enc.output_scale))
            max_batch = min(len(enc.features) * json_ciphertext + 4096, self.settings.max_batch_request_bytes)
        encryption = SinglePath(single.rt.parameters, single.input_scale, single.output_scale, single.layout,
                                flood_bound(single.output_scale))
        return ModelDescription(model.model_hash, model.estimator, model.kind, model.n_features, model.n_outputs,
                                model.classes, model.proba, model.input_bound, encryption, batch,
                                Limits(max_request, max_batch))

    # -- the data plane ------------------------------------------------------------------

    def describe(self) -> ModelDescription:
        """What a client needs to encrypt for this model; no weights."""
        return self.loaded.description

    @property
    def limits(self) -> Limits:
        """The body caps a host checks before parsing."""
        return self.loaded.description.limits

    @staticmethod
    def health() -> dict:
        """Liveness only: says nothing about the model or other callers, loads nothing."""
        return {"status": "ok"}

    def check_upload(self, key_id: str, data: bytes) -> PublicBundle:
        """Check a bundle before it is stored under ``key_id``.

        Raises:
            BadRequest: for a malformed key id.
            KeysRejected: if the bundle does not parse, holds a secret key, uses unserved
                parameters, has a visibly malformed public key, or does not hash to ``key_id``.
        """
        check_key_id(key_id)
        bundle = load_bundle(data, key_id, served=(self.settings.parameters,))
        logger.info("key bundle %s accepted (%d bytes)", key_id[:12], len(data))
        return bundle

    def forget(self, key_id: str) -> None:
        """Drop a bundle from the caches (after it was deleted from storage)."""
        self.bundles.discard(check_key_id(key_id))
        if self._loaded is not None:
            self._loaded.pools.discard(key_id)

    def challenge(self, key_id: str, source: BundleSource | bytes | None,
                  pending: tuple[str, float] | None = None) -> ownership.Challenge:
        """A challenge only the holder of the bundle's secret key can answer (to delete it): the
        pending nonce (kept beside the bundle by the host) while it lasts, else a new one.

        Raises:
            BadRequest, KeysNotFound, KeysRejected, ServiceUnavailable: as :meth:`score`.
        """
        check_key_id(key_id)
        return ownership.issue(self._bundle(key_id, source), pending)

    def score(self, key_id: str, source: BundleSource | bytes | None, request: ScoreRequest) -> ScoreResponse:
        """Score one record, or a batch in coefficient lanes, with the bundle stored under ``key_id``.

        Args:
            key_id: from the URL.
            source: where the stored bundle is (a BundleSource), or its bytes as the host
                holds them, or None when the host knows none is stored.
            request: the parsed request.

        Raises:
            ScoringError: a subclass naming the HTTP status for every refusal.
        """
        started = time.perf_counter()
        check_key_id(key_id)
        loaded = self.loaded
        model_hash = loaded.model.model_hash
        if request.model_hash is not None and request.model_hash != model_hash:
            raise ModelMismatch(f"request was made for model {request.model_hash}; this service now serves "
                                f"{model_hash}")
        with loaded.pools.busy():
            if request.records is None:
                chunks = self._ciphertexts(request, loaded)
                bundle = self._bundle(key_id, source)
                results = loaded.single.evaluate(chunks, loaded.pools.take(bundle))
            else:
                columns = self._columns(request, loaded)
                bundle = self._bundle(key_id, source)
                results = loaded.lanes.evaluate(columns, bundle.encryptor, request.records)
            response = ScoreResponse(tuple(loaded.rt.save(r) for r in results), model_hash, request.records)
        logger.info("scored %d record(s) for key %s in %.2f ms", response.disclosed, key_id[:12],
                    (time.perf_counter() - started) * 1e3)
        return response

    def _ciphertexts(self, request: ScoreRequest, loaded: LoadedModel) -> list[seal.Ciphertext]:
        single = loaded.single
        expected = single.layout.n_chunks
        if len(request.ciphertexts) != expected:
            raise CiphertextRejected(f"this model takes {expected} ciphertext(s) per record "
                                     f"({loaded.model.n_features} features), not {len(request.ciphertexts)}")
        return [self._load(loaded.rt, blob, single.input_scale, f"ciphertext {i}")
                for i, blob in enumerate(request.ciphertexts)]

    def _columns(self, request: ScoreRequest, loaded: LoadedModel) -> list[seal.Ciphertext]:
        if loaded.lanes is None:
            raise BadRequest("this model has no batch path (its batches would not fit the request limits); "
                             "send one record per request")
        encoding = loaded.lanes.encoding
        if request.records > encoding.max_records:
            raise BadRequest(f"a batch holds at most {encoding.max_records} records, not {request.records}")
        if len(request.ciphertexts) != len(encoding.features):
            what = ("one per feature" if len(encoding.features) == encoding.n_features
                    else "one per feature with a nonzero weight")
            raise CiphertextRejected(f"a batch for this model takes {len(encoding.features)} ciphertexts ({what}), "
                                     f"not {len(request.ciphertexts)}")
        return [self._load(loaded.rt, blob, encoding.input_scale, f"ciphertext {i}")
                for i, blob in enumerate(request.ciphertexts)]

    @staticmethod
    def _load(rt: SealRuntime, blob: bytes, scale: float, what: str) -> seal.Ciphertext:
        try:
            ciphertext = rt.load(seal.Ciphertext(), canonical_ciphertext(rt, blob, scale=scale, seeded_ok=True,
                                                                         packed_ok=True, what=what))
        except BlobError as exc:
            raise CiphertextRejected(str(exc)) from exc
        except (RuntimeError, ValueError) as exc:
            raise CiphertextRejected(f"{what} is not valid for the served parameters") from exc
        if ciphertext.is_transparent():  # SEAL would refuse to multiply it
            raise CiphertextRejected(f"{what} has a zero second part: it encrypts nothing")
        return ciphertext

    def _bundle(self, key_id: str, source: BundleSource | bytes | None) -> PublicBundle:
        if source is None:  # the host knows nothing is stored (no storage): the cache is no store
            raise KeysNotFound(KEYS_MISSING_MESSAGE.format(key_id=key_id))
        if isinstance(source, bytes):
            if key_id_of(source) != key_id:
                raise KeysRejected(BUNDLE_NAME_MESSAGE)
            source = InlineBundle(source)
        cached = self.bundles.get(key_id)
        if cached is not None:
            bundle, confirmed = cached
            if confirmed:
                return bundle
            if source.exists():
                self.bundles.put(bundle)
                return bundle
            self.forget(key_id)
            raise KeysNotFound(KEYS_MISSING_MESSAGE.format(key_id=key_id))
        data = source.read()
        if data is None:
            raise KeysNotFound(KEYS_MISSING_MESSAGE.format(key_id=key_id))
        bundle = load_bundle(data, key_id, served=(self.settings.parameters,))
        for evicted in self.bundles.put(bundle):
            if self._loaded is not None:
                self._loaded.pools.discard(evicted)
        return bundle
