"""Small helpers the tests share: one in-process encrypted round trip through the service."""

from __future__ import annotations

import numpy as np

from client.keys import SecretKeys
from client.scoring_client import ModelInfo
from scoring import protocol
from scoring.service import ScoringService


def encrypt_request(service: ScoringService, keys: SecretKeys, x: np.ndarray, *, binary: bool = True,
                    model_hash: str | None = "served") -> tuple[bytes, str]:
    """A request body for one record, as ScoringClient builds it."""
    info = ModelInfo(service.describe())
    chunks = keys.encrypt_record(info.encoding, x)
    digest = info.model_hash if model_hash == "served" else model_hash
    return protocol.encode(protocol.ScoreMessage(chunks, digest), binary=binary, response=False)


def decrypt_response(service: ScoringService, keys: SecretKeys, body: bytes, content_type: str) -> np.ndarray:
    info = ModelInfo(service.describe())
    message = protocol.decode(body, content_type, response=True)
    return keys.decrypt_scores(info.encoding, message.ciphertexts)


def score_in_process(service: ScoringService, keys: SecretKeys, x: np.ndarray, *, binary: bool = True) -> np.ndarray:
    """Encrypt, score with the service (bundle passed as the host would), decrypt."""
    body, content_type = encrypt_request(service, keys, x, binary=binary)
    out, out_type = service.score(keys.key_id, keys.public_bundle(), body, content_type)
    return decrypt_response(service, keys, out, out_type)
