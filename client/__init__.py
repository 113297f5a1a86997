"""The client library: keys, encryption, upload, the HTTP call and decryption.

Example:
    >>> from client import ScoringClient
    >>> client = ScoringClient("http://127.0.0.1:7071")   # doctest: +SKIP
    >>> client.predict(X[:3])                             # doctest: +SKIP
"""

from scoring.protocol import ModelDescription

from .keys import SecretKeys, load_secret_key, save_secret_key
from .scoring_client import EncryptedRecord, EncryptedScores, ModelChanged, ScoringClient
from .transport import ContainerTransport, FunctionsTransport, ServiceError

__all__ = ["ScoringClient", "ServiceError", "ModelChanged", "ModelDescription", "EncryptedRecord", "EncryptedScores",
           "SecretKeys", "save_secret_key", "load_secret_key", "FunctionsTransport", "ContainerTransport"]
