"""ScoringClient: encrypted predictions from a scoring endpoint, like a scikit-learn model.

One call does the whole job (``client.predict(X)``: keys generated and uploaded on first
use, encryption, the HTTP call, decryption); every step stays public for notebooks that
show them one by one. Tables too big for memory go through :meth:`ScoringClient.score_stream`,
which fills full batches across the chunks it is given and keeps encryption and sending
overlapped.

Example:
    >>> client = ScoringClient("http://127.0.0.1:7071")       # doctest: +SKIP
    >>> client.predict(X_test[:5])                            # doctest: +SKIP
    array([7, 2, 1, 0, 4])
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import requests

from scoring.encoding import LaneEncoding
from scoring.errors import KeysRejected
from scoring.keys import parse_bundle
from scoring.model import labels_from_scores, probabilities
from scoring.protocol import ModelDescription, ScoreRequest, ScoreResponse

from .batches import PARALLEL_MIN_COLUMNS, as_records, batch_pays_off, cut, default_processes, full_batches, in_executor
from .keys import SecretKeys
from .transport import DEFAULT_TIMEOUT, HttpTransport, ServiceError, transport_for
from .workers import EncryptionPool

logger = logging.getLogger(__name__)

OUTPUTS = ("scores", "label", "proba")


class ModelChanged(ValueError):
    """The service serves another model than the one the client described or was pinned to."""


@dataclass(frozen=True)
class EncryptedRecord:
    """One record's ciphertexts, ready to send."""

    ciphertexts: tuple[bytes, ...]
    model_hash: str


@dataclass(frozen=True)
class EncryptedScores:
    """The service's answer for one record: result ciphertexts only the key owner can read."""

    ciphertexts: tuple[bytes, ...]
    model_hash: str


class ScoringClient:
    """A client for the encrypted scoring service (Azure Functions or the container).

    Args:
        endpoint: the service's base URL, e.g. ``https://myapp.azurewebsites.net``, or the
            container's scoring URL, ending in ``/score`` (Azure ML endpoint, ACI,
            ``make serve-aml``), which answers every call on that one URL (docs/aml.md).
        transport: a transport object instead of ``endpoint`` (client.transport).
        function_key: the Azure Functions host key, sent as ``x-functions-key`` (never in the URL).
        timeout: seconds for each HTTP request.
        keys: existing keys (e.g. ``SecretKeys.from_bytes(...)``); generated if None.
        binary: send the binary wire form (a third smaller than JSON).
        retries: retries on 429 and 503, honouring Retry-After (on a session made here).
        route_prefix: the host's route prefix (``api`` for Azure Functions).
        session: a ``requests.Session`` to use as it is (for tests or custom transports).
        batch_threshold: score this many records or more as batches; None decides by the
            measured costs (``client.batches.batch_pays_off``).
        processes: encryption processes for batches; None: one per core, or 1 inside a
            daemonic process or a Spark task.
        progress: show a progress bar; None shows one on jobs of more than one batch, never
            inside an executor.
        upload: upload the public bundle when the service lacks it (and again if it was
            deleted); False for executors whose driver uploaded it: a missing bundle is then
            an error, never a re-upload.
        expect_model_hash: refuse to score against any other model (a redeploy mid-job
            would otherwise mix two models' scores).
    """

    def __init__(self, endpoint: str | None = None, *, transport: HttpTransport | None = None,
                 function_key: str | None = None, timeout: float = DEFAULT_TIMEOUT, keys: SecretKeys | None = None,
                 binary: bool = True, retries: int = 3, route_prefix: str = "api",
                 session: requests.Session | None = None, batch_threshold: int | None = None,
                 processes: int | None = None, progress: bool | None = None, upload: bool = True,
                 expect_model_hash: str | None = None) -> None:
        if (endpoint is None) == (transport is None):
            raise ValueError("give an endpoint URL or a transport, not both")
        self.transport = transport or transport_for(endpoint, function_key=function_key, timeout=timeout,
                                                    binary=binary, retries=retries, session=session,
                                                    route_prefix=route_prefix)
        self._owns_transport = transport is None
        self._keys = keys
        self._uploaded: str | None = None
        self._model: ModelDescription | None = None
        self.batch_threshold = batch_threshold
        self.processes = processes
        self.progress = progress
        self.upload = upload
        self.expect_model_hash = expect_model_hash
        self._pool: EncryptionPool | None = None

    @property
    def session(self) -> requests.Session:
        return self.transport.session

    def describe_model(self, *, refresh: bool = False) -> ModelDescription:
        """What the served model takes and returns (cached; ``refresh`` asks again).

        Raises:
            ModelChanged: if the client is pinned to another model (``expect_model_hash``).
        """
        if self._model is None or refresh:
            description = ModelDescription.from_dict(self.transport.model())
            if self.expect_model_hash and description.model_hash != self.expect_model_hash:
                raise ModelChanged(f"the service serves model {description.model_hash}, not "
                                   f"{self.expect_model_hash} (expect_model_hash); refusing to mix two models' "
                                   "scores")
            self._model = description
        return self._model

    # -- keys ----------------------------------------------------------------------------

    @property
    def keys(self) -> SecretKeys:
        """This client's keys, generated for the served parameters on first use."""
        if self._keys is None:
            self.generate_keys()
        return self._keys

    def generate_keys(self) -> SecretKeys:
        """Generate a fresh key pair for the parameters the service announces."""
        self._keys = SecretKeys.generate(self.describe_model().parameters)
        self._uploaded = None
        self.close()  # batch workers hold the old secret key
        return self._keys

    def public_bundle(self) -> bytes:
        """The public bundle, checked to hold nothing secret before it can leave the client.

        Raises:
            KeysRejected: if the bundle would carry a secret key or does not parse.
        """
        bundle = self.keys.public_bundle()
        parse_bundle(bundle, served=(self.keys.parameters,))
        return bundle

    def upload_keys(self) -> str:
        """Upload the public bundle through the service (``PUT /api/keys/{id}``); return its id."""
        bundle = self.public_bundle()
        key_id = self.keys.key_id
        self.transport.put_keys(key_id, bundle)
        self._uploaded = key_id
        logger.info("uploaded key bundle %s (%d bytes)", key_id[:12], len(bundle))
        return key_id

    def mark_uploaded(self) -> None:
        """Say the bundle is already where the service reads it (uploaded by a driver, say)."""
        self._uploaded = self.keys.key_id

    def upload_keys_to_blob(self, *, setting: str | None = None, connection_string: str | None = None,
                            account_url: str | None = None, credential=None, container: str | None = None) -> str:
        """Upload the public bundle straight to blob storage; return its id.

        For those who manage storage themselves, as in the original tutorial: name the app
        settings the service itself uses (``setting="SCORING_STORAGE"``, read from the
        environment by the same rule, identity included), or give a connection string, or
        an account URL with a credential. See :func:`keystore.blobs.upload_bundle`.
        """
        from keystore.blobs import upload_bundle

        key_id = upload_bundle(self.public_bundle(), setting=setting, connection_string=connection_string,
                               account_url=account_url, credential=credential, container=container)
        self._uploaded = key_id
        return key_id

    def delete_keys(self) -> bool:
        """Delete the uploaded bundle from the service, proving it holds the secret key.

        Asks for a challenge, decrypts it, and sends the answer with the DELETE. False if no
        bundle was stored.
        """
        key_id = self.keys.key_id
        try:
            proof = self.keys.answer_challenge(self.transport.challenge(key_id))
            self.transport.delete_keys(key_id, proof)
        except ServiceError as exc:
            if exc.status == 404:
                return False
            raise
        finally:
            self._uploaded = None
        return True

    # -- the steps -----------------------------------------------------------------------

    def encrypt(self, x) -> EncryptedRecord:
        """Encrypt one record (a 1-D array of the model's features).

        Raises:
            ValueError: if the record's length differs from the model's feature count, or a
                value is not finite or exceeds the model's input bound.
        """
        info = self.describe_model()
        return EncryptedRecord(self.keys.encrypt_record(info.record_encoding(), x), info.model_hash)

    def score(self, record: EncryptedRecord) -> EncryptedScores:
        """Send an encrypted record; return the encrypted scores. Uploads keys if needed."""
        response = self._send(ScoreRequest(record.ciphertexts, record.model_hash))
        return EncryptedScores(response.ciphertexts, response.model_hash)

    def decrypt(self, scores: EncryptedScores) -> np.ndarray:
        """Decrypt one record's scores, shape (outputs,).

        Raises:
            ModelChanged: if the scores were made for another model than the one described.
        """
        info = self.describe_model()
        if scores.model_hash != info.model_hash:
            raise ModelChanged(f"scores come from model {scores.model_hash}, not the described {info.model_hash}; "
                               "call describe_model(refresh=True)")
        return self.keys.decrypt_scores(info.record_encoding(), scores.ciphertexts)

    def _send(self, request: ScoreRequest) -> ScoreResponse:
        keys, transport = self.keys, self.transport
        inline = None
        if self.upload and self._uploaded != keys.key_id:
            if transport.stores_keys:
                self.upload_keys()
            else:
                inline = self.public_bundle()  # the container holds no bundle of ours
        try:
            response = transport.score(keys.key_id, request, bundle=inline)
        except ServiceError as exc:
            if exc.code == "model_mismatch":
                raise ModelChanged(f"{exc.message}; call describe_model(refresh=True)") from exc
            if exc.code != "keys_not_found" or not self.upload:
                raise
            self._uploaded = None  # deleted or expired on the service: upload again, once
            if transport.stores_keys:
                self.upload_keys()
            response = transport.score(keys.key_id, request, bundle=None if transport.stores_keys
                                       else self.public_bundle())
        if response.model_hash != request.model_hash:
            raise ModelChanged(f"scores come from model {response.model_hash}, not the described "
                               f"{request.model_hash}; call describe_model(refresh=True)")
        return response

    # -- the one-call methods ------------------------------------------------------------

    def decision_function(self, X) -> np.ndarray:
        """Scores for each row, shaped as the estimator's ``decision_function`` (or ``predict``).

        Many rows go as batches in coefficient lanes (encrypted in parallel, overlapped with
        sending) when that costs less than one request per row.
        """
        X = as_records(X)
        lanes = self.describe_model().lane_encoding()
        show = self._show_progress(len(X) > (lanes.max_records if lanes else math.inf))
        scores = np.vstack(list(self._score_chunks([X], parallel=self._parallel(len(X), lanes), progress=show,
                                                   total=len(X))))
        return self._squeezed(scores)

    def predict(self, X) -> np.ndarray:
        """Class labels (classifiers) or values (regressors) for each row."""
        return self._labels(self.decision_function(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, computed here from the decrypted scores as scikit-learn does.

        Raises:
            AttributeError: if the served estimator has no ``predict_proba``.
        """
        return self._proba(self.decision_function(X))

    def score_stream(self, chunks: Iterable, *, output: str = "scores") -> Iterator[np.ndarray]:
        """Score an iterator of record chunks; yield one result per chunk, in order.

        Records fill full batches across chunk boundaries (a partial batch costs as much as
        a full one), and batch k+1 is encrypted while batch k is on the wire. Only the end of
        the stream may go as a partial batch or as single requests.

        Args:
            chunks: arrays (or DataFrames) of records, rows by features, of any sizes.
            output: ``"scores"`` (decision_function's shape), ``"label"`` or ``"proba"``.

        Example:
            >>> for labels in client.score_stream(pd.read_csv("big.csv", chunksize=10_000), output="label"):  # doctest: +SKIP
            ...     write(labels)                                                                              # doctest: +SKIP
        """
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        convert = {"scores": self._squeezed, "label": self._labels, "proba": self._proba}[output]
        parallel = self._processes() > 1
        for scores in self._score_chunks(chunks, parallel=parallel, progress=bool(self.progress), total=None):
            yield convert(scores)

    def _score_chunks(self, chunks: Iterable, *, parallel: bool, progress: bool,
                      total: int | None) -> Iterator[np.ndarray]:
        from tqdm.auto import tqdm

        info = self.describe_model()
        lanes = info.lane_encoding()
        sizes: list[int] = []
        scores: list[np.ndarray] = []
        block = lanes.max_records if lanes is not None else 256
        with tqdm(total=total, unit="record", disable=not progress, desc="encrypted scoring") as bar:
            for result in self._scored_blocks(full_batches(chunks, block, sizes), lanes, parallel):
                bar.update(len(result))
                scores.append(result)
                yield from cut(scores, sizes, info.n_outputs, done=False)
            yield from cut(scores, sizes, info.n_outputs, done=True)

    def _scored_blocks(self, blocks: Iterable[np.ndarray], lanes: LaneEncoding | None,
                       parallel: bool, *, batches_only: bool = False) -> Iterator[np.ndarray]:
        """Scores per block, in order; a batch is on the wire while the next is encrypted."""
        with futures.ThreadPoolExecutor(1, thread_name_prefix="scoring-wire") as wire:
            pending: futures.Future | None = None
            for records in blocks:
                if lanes is not None and (batches_only or self._batch(len(records), lanes)):
                    ciphertexts = self._encrypt_columns(lanes, records, parallel)
                    if pending is not None:
                        yield pending.result()
                    pending = wire.submit(self._batch_scores, lanes, ciphertexts, len(records))
                    continue
                if pending is not None:
                    yield pending.result()
                    pending = None
                yield np.vstack([self.decrypt(self.score(self.encrypt(row))) for row in records])
            if pending is not None:
                yield pending.result()

    def _batch(self, records: int, lanes: LaneEncoding) -> bool:
        if self.batch_threshold is not None:
            return records >= self.batch_threshold
        return records == lanes.max_records or batch_pays_off(records, lanes)

    def _encrypt_columns(self, lanes: LaneEncoding, records: np.ndarray, parallel: bool) -> tuple[bytes, ...]:
        processes = self._processes()
        if not parallel or processes == 1:
            return self.keys.encrypt_columns(lanes, records)
        if self._pool is None:
            self._pool = EncryptionPool(self.keys, processes)
        return self._pool.encrypt(lanes.columns(records), lanes.input_scale)

    def _batch_scores(self, lanes: LaneEncoding, ciphertexts: tuple[bytes, ...], records: int) -> np.ndarray:
        response = self._send(ScoreRequest(ciphertexts, self.describe_model().model_hash, records))
        return self.keys.decrypt_columns(lanes, response.ciphertexts, records)

    def score_batches(self, X) -> np.ndarray:
        """Scores of many records through the batch path only, shape (records, outputs).

        Raises:
            ValueError: if the service has no batch path for this model, or the records do
                not fit it.
        """
        lanes = self.describe_model().lane_encoding()
        if lanes is None:
            raise ValueError("the service offers no batch path for this model")
        X = as_records(X)
        blocks = (X[start:start + lanes.max_records] for start in range(0, len(X), lanes.max_records))
        return np.vstack(list(self._scored_blocks(blocks, lanes, self._parallel(len(X), lanes), batches_only=True)))

    # -- outputs -------------------------------------------------------------------------

    def _squeezed(self, scores: np.ndarray) -> np.ndarray:
        return scores[:, 0] if scores.ndim == 2 and scores.shape[1] == 1 else scores

    def _labels(self, scores: np.ndarray) -> np.ndarray:
        classes = self.describe_model().classes
        return self._squeezed(scores) if classes is None else labels_from_scores(classes, scores)

    def _proba(self, scores: np.ndarray) -> np.ndarray:
        kind = self.describe_model().proba
        if kind is None:
            raise AttributeError("the served model does not offer predict_proba")
        return probabilities(kind, scores)

    def _parallel(self, records: int, lanes: LaneEncoding | None) -> bool:
        """Whether batches of ``records`` are worth worker processes (a started pool always is)."""
        columns = 0 if lanes is None else math.ceil(records / lanes.max_records) * len(lanes.features)
        return self._pool is not None or columns >= PARALLEL_MIN_COLUMNS

    def _processes(self) -> int:
        return self.processes if self.processes is not None else default_processes()

    def _show_progress(self, several_batches: bool) -> bool:
        if self.progress is not None:
            return self.progress
        return several_batches and not in_executor()

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop batch worker processes, if any were started, and close the HTTP session if the
        client made it (a session you passed in stays open)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> ScoringClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


__all__ = ["ScoringClient", "ServiceError", "ModelChanged", "EncryptedRecord", "EncryptedScores", "KeysRejected"]

