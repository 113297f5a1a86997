"""ScoringClient: encrypted predictions from a scoring endpoint, like a scikit-learn model.

One call does the whole job (``client.predict(X)``: keys generated and uploaded on first
use, encryption, the HTTP call, decryption); every step stays public for notebooks that
show them one by one.

Example:
    >>> client = ScoringClient("http://127.0.0.1:7071")       # doctest: +SKIP
    >>> client.predict(X_test[:5])                            # doctest: +SKIP
    array([7, 2, 1, 0, 4])
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from dataclasses import dataclass

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scoring import protocol
from scoring.ckks import CkksParameters
from scoring.errors import KeysRejected
from scoring.bulk import BulkEncoding
from scoring.kernel import RecordEncoding
from scoring.keys import parse_bundle
from scoring.model import labels_from_scores, probabilities

from .bulk import ColumnEncryptor, bulk_pays_off, stream
from .keys import SecretKeys

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
RETRY_STATUSES = (429, 503)


class ServiceError(Exception):
    """The service refused a request; carries its status, error code, message and response."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status = response.status_code
        try:
            body = response.json()
            self.code, self.message = body.get("error", "unknown"), body.get("message", "")
        except ValueError:
            self.code, self.message = "unknown", response.text[:200]
        super().__init__(f"{self.status} {self.code}: {self.message} ({response.request.method} "
                         f"{response.url.split('?')[0]})")


@dataclass(frozen=True)
class ModelInfo:
    """What ``GET /api/model`` says: enough to encrypt for the model and read its scores."""

    raw: dict

    @property
    def model_hash(self) -> str:
        return self.raw["model_hash"]

    @property
    def n_features(self) -> int:
        return self.raw["n_features"]

    @property
    def n_outputs(self) -> int:
        return self.raw["n_outputs"]

    @property
    def classes(self) -> tuple | None:
        classes = self.raw.get("classes")
        return None if classes is None else tuple(classes)

    @property
    def parameters(self) -> CkksParameters:
        enc = self.raw["encryption"]
        return CkksParameters(enc["poly_modulus_degree"], tuple(int(q) for q in enc["coeff_modulus"]))

    @functools.cached_property
    def encoding(self) -> RecordEncoding:
        """How records are encoded and scores read back (shared with the server's kernel)."""
        return RecordEncoding.from_description(self.raw)

    @functools.cached_property
    def bulk(self) -> BulkEncoding | None:
        """How batches are encoded, or None if the service has no batch path for the model."""
        return BulkEncoding.from_description(self.raw)


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
        function_key: the Azure Functions key, sent as ``x-functions-key`` (never in the URL).
        timeout: seconds for each HTTP request.
        keys: existing keys (e.g. from :func:`client.load_secret_key`); generated if None.
        binary: send the binary wire form (a third smaller than JSON).
        retries: retries on 429 and 503, honouring Retry-After.
        route_prefix: the host's route prefix (``api`` for Azure Functions).
        session: a ``requests.Session`` to use (for tests or custom transports).
        bulk_threshold: score this many records or more as batches (feature-major); None
            decides by the measured costs (``client.bulk.bulk_pays_off``).
        processes: worker processes for batch encryption (default: one per core).
        progress: show a progress bar for batch jobs; None shows one on jobs of more than
            one batch.
    """

    def __init__(self, endpoint: str, *, function_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 keys: SecretKeys | None = None, binary: bool = True, retries: int = 3,
                 route_prefix: str = "api", session: requests.Session | None = None,
                 bulk_threshold: int | None = None, processes: int | None = None,
                 progress: bool | None = None) -> None:
        endpoint = endpoint.rstrip("/")
        self.single_route = endpoint.endswith("/score")  # the container: one URL for every call
        self.base_url = endpoint if self.single_route else (
            endpoint + ("/" + route_prefix.strip("/") if route_prefix else ""))
        self.timeout = timeout
        self.binary = binary
        self._keys = keys
        self._uploaded: str | None = None
        self._model: ModelInfo | None = None
        self.bulk_threshold = bulk_threshold
        self.processes = processes
        self.progress = progress
        self._columns: ColumnEncryptor | None = None
        self.session = session or requests.Session()
        retry = Retry(total=retries, status_forcelist=RETRY_STATUSES, allowed_methods=None, backoff_factor=0.2,
                      respect_retry_after_header=True, raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        if function_key:
            self.session.headers["x-functions-key"] = function_key

    # -- HTTP ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.session.request(method, self._url(path), timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise ServiceError(response)
        return response

    def _url(self, path: str) -> str:
        """``<base>/<path>`` on the function; the container's one URL for the rest."""
        if not self.single_route:
            return f"{self.base_url}/{path}"
        if path.startswith("keys/"):
            raise NotImplementedError("the container takes no key uploads: use upload_keys_to_blob() "
                                      "(the storage it reads), or let score() send the bundle inline")
        return self.base_url

    def describe_model(self, *, refresh: bool = False) -> ModelInfo:
        """What the served model takes and returns (cached; ``refresh`` asks again)."""
        if self._model is None or refresh:
            self._model = ModelInfo(self._request("GET", "model").json())
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
        self._request("PUT", f"keys/{key_id}", data=bundle, headers={"content-type": protocol.BINARY_TYPE})
        self._uploaded = key_id
        logger.info("uploaded key bundle %s (%d bytes)", key_id[:12], len(bundle))
        return key_id

    def upload_keys_to_blob(self, *, connection_string: str | None = None, account_url: str | None = None,
                            credential=None, container: str = "hekeys") -> str:
        """Upload the public bundle straight to your own blob storage; return its id.

        For those who manage storage themselves, as in the original tutorial. Use a
        connection string, or an account URL with a credential (a SAS, a key, or an
        azure-identity credential). The container is created if absent.
        """
        from .storage import upload_bundle

        key_id = upload_bundle(self.public_bundle(), connection_string=connection_string,
                               account_url=account_url, credential=credential, container=container)
        self._uploaded = key_id
        return key_id

    def delete_keys(self) -> bool:
        """Delete the uploaded bundle from the service; False if it was not there."""
        key_id = self.keys.key_id
        try:
            self._request("DELETE", f"keys/{key_id}")
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
        return EncryptedRecord(self.keys.encrypt_record(info.encoding, x), info.model_hash)

    def score(self, record: EncryptedRecord) -> EncryptedScores:
        """Send an encrypted record; return the encrypted scores. Uploads keys if needed."""
        reply = self._send(protocol.ScoreMessage(record.ciphertexts, record.model_hash))
        return EncryptedScores(reply.ciphertexts, reply.model_hash)

    def _send(self, message: protocol.ScoreMessage) -> protocol.ScoreMessage:
        if self.single_route and self._uploaded != self.keys.key_id:
            response = self._post_inline(message)  # the container holds no bundle of ours
        else:
            response = self._post_stored(message)
        reply = protocol.decode(response.content, response.headers.get("content-type"), response=True)
        if reply.model_hash != message.model_hash:
            raise ValueError(f"scores come from model {reply.model_hash}, not the described {message.model_hash}; "
                             "call describe_model(refresh=True)")
        return reply

    def _post_stored(self, message: protocol.ScoreMessage) -> requests.Response:
        if self._uploaded != self.keys.key_id:
            self.upload_keys()
        body, content_type = protocol.encode(message, binary=self.binary, response=False)
        try:
            return self._post_score(body, content_type)
        except ServiceError as exc:
            if exc.code != "keys_not_found":
                raise
            if self.single_route:  # gone from the container's storage: send the bundle along
                self._uploaded = None
                return self._post_inline(message)
            self.upload_keys()  # deleted or expired on the service: upload again, once
            return self._post_score(body, content_type)

    def _post_score(self, body: bytes, content_type: str) -> requests.Response:
        headers = {"content-type": content_type, "accept": content_type}
        if self.single_route:
            headers["x-key-id"] = self.keys.key_id
        return self._request("POST", f"score/{self.keys.key_id}", data=body, headers=headers)

    def _post_inline(self, message: protocol.ScoreMessage) -> requests.Response:
        """The container's JSON document: key id, score message and the public bundle."""
        data, _ = protocol.encode(message, binary=False, response=False)
        document = {"key_id": self.keys.key_id, "data": json.loads(data),
                    "keys": base64.b64encode(self.public_bundle()).decode("ascii")}
        return self._request("POST", "score", json=document, headers={"accept": protocol.JSON_TYPE})

    def decrypt(self, scores: EncryptedScores) -> np.ndarray:
        """Decrypt one record's scores, shape (outputs,).

        Raises:
            ValueError: if the scores were made for another model than the one described.
        """
        info = self.describe_model()
        if scores.model_hash != info.model_hash:
            raise ValueError(f"scores come from model {scores.model_hash}, not the described "
                             f"{info.model_hash}; call describe_model(refresh=True)")
        return self.keys.decrypt_scores(info.encoding, scores.ciphertexts)

    # -- the one-call methods ------------------------------------------------------------

    def decision_function(self, X) -> np.ndarray:
        """Scores for each row, shaped as the estimator's ``decision_function`` (or ``predict``).

        Many rows go as batches (feature-major, encrypted in parallel, streamed) when that
        costs less than one request per row.
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if self._batch(len(X)):
            scores = self.score_batches(X)
        else:
            scores = np.vstack([self.decrypt(self.score(self.encrypt(row))) for row in X])
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def _batch(self, records: int) -> bool:
        bulk = self.describe_model().bulk
        if bulk is None:
            return False
        if self.bulk_threshold is not None:
            return records >= self.bulk_threshold
        return bulk_pays_off(records, bulk)

    def score_batches(self, X) -> np.ndarray:
        """Scores of many records through the batch path, shape (records, outputs).

        Raises:
            ValueError: if the service has no batch path for this model, or the records do
                not fit it.
        """
        info = self.describe_model()
        if info.bulk is None:
            raise ValueError("the service offers no batch path for this model")
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if self._columns is None:
            self._columns = ColumnEncryptor(self.keys, info.bulk, self.processes)

        def send(ciphertexts: tuple[bytes, ...], records: int) -> tuple[bytes, ...]:
            return self._send(protocol.ScoreMessage(ciphertexts, info.model_hash, records)).ciphertexts

        def decrypt(ciphertexts: tuple[bytes, ...], records: int) -> np.ndarray:
            return self.keys.decrypt_columns(info.bulk, ciphertexts, records)

        show = len(X) > info.bulk.max_records if self.progress is None else self.progress
        return stream(X, self._columns, send, decrypt, progress=show)

    def close(self) -> None:
        """Stop batch worker processes, if any were started."""
        if self._columns is not None:
            self._columns.close()
            self._columns = None

    def __enter__(self) -> ScoringClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def predict(self, X) -> np.ndarray:
        """Class labels (classifiers) or values (regressors) for each row."""
        scores = self.decision_function(X)
        classes = self.describe_model().classes
        return scores if classes is None else labels_from_scores(classes, scores)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, computed here from the decrypted scores as scikit-learn does.

        Raises:
            AttributeError: if the served estimator has no ``predict_proba``.
        """
        kind = self.describe_model().raw.get("proba")
        if kind is None:
            raise AttributeError("the served model does not offer predict_proba")
        return probabilities(kind, self.decision_function(X))


__all__ = ["ScoringClient", "ServiceError", "ModelInfo", "EncryptedRecord", "EncryptedScores", "KeysRejected"]
