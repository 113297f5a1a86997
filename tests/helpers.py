"""Small helpers the tests share: an in-process encrypted round trip through the service, and
whether a process is still alive."""

from __future__ import annotations

import os

import numpy as np

from client.keys import SecretKeys
from scoring import protocol
from scoring.protocol import ScoreRequest, WireForm
from scoring.service import ScoringService


def encrypt_request(service: ScoringService, keys: SecretKeys, x: np.ndarray, *, binary: bool = True,
                    model_hash: str | None = "served") -> tuple[bytes, str]:
    """A request body for one record, as ScoringClient builds it, and its content type."""
    info = service.describe()
    chunks = keys.encrypt_record(info.record_encoding(), x)
    digest = info.model_hash if model_hash == "served" else model_hash
    form = WireForm.BINARY if binary else WireForm.JSON
    return protocol.encode_request(ScoreRequest(chunks, digest), form), form.content_type


def decrypt_response(service: ScoringService, keys: SecretKeys, body: bytes, content_type: str) -> np.ndarray:
    response = protocol.decode_response(body, content_type)
    return keys.decrypt_scores(service.describe().record_encoding(), response.ciphertexts)


def score_bytes(service: ScoringService, key_id: str, bundle, body: bytes, content_type: str | None
                ) -> tuple[bytes, str]:
    """What a host does with a body: the codec's caps and parse, the data plane, the encoding."""
    request, form = protocol.read_request(body, content_type, service.limits)
    return protocol.encode_response(service.score(key_id, bundle, request), form), form.content_type


def score_in_process(service: ScoringService, keys: SecretKeys, x: np.ndarray) -> np.ndarray:
    """Encrypt, score with the service (bundle passed as the host would), decrypt."""
    info = service.describe()
    response = service.score(keys.key_id, keys.public_bundle(),
                             ScoreRequest(keys.encrypt_record(info.record_encoding(), x), info.model_hash))
    return keys.decrypt_scores(info.record_encoding(), response.ciphertexts)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not; an unreadable one might)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead, only not reaped yet
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
