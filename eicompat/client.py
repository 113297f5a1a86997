"""``EILinearRegressionClient``: the client half of ``encrypted-inference==0.9``'s API.

Code written for the original Azure ML tutorial runs with only its import line changed::

    from eicompat import EILinearRegressionClient   # was: from encrypted.inference.eiclient import ...

    edp = EILinearRegressionClient(verbose=True)
    public_keys_blob, public_keys_data = edp.get_public_keys()   # upload the data under that name
    raw_data = edp.encrypt(X_test[index])                        # list of base64 strings, JSON-ready
    results = edp.decrypt(eresult)                               # numpy array of scores
    prediction = np.argmax(results)

It pairs with :class:`eicompat.EIServer`, whose module docstring explains the
*standard encoding* both halves share: the 0.9 client encrypts before it knows the model,
so the record's length alone fixes how it is split and scaled, and features must lie in
[-1, 1] (the tutorial's pixels / 255). Built on :class:`client.SecretKeys`: the same keys,
encryption and decryption as :class:`client.ScoringClient`, which remains the way to call
the Azure Functions app (it learns each model's own encoding from ``GET /api/model``).

Differences from 0.9, all on the side of safety:

* the "public keys" are the client's key bundle (about 0.1 MB instead of 9 MB: no Galois or
  relinearization keys) and their name is the bundle's SHA-256 (64 hex characters), under
  which the Functions app also finds them;
* the secret key never leaves the process as a string: there is no ``secret_key()``;
  persist it with :meth:`EILinearRegressionClient.save_secret_key` (a mode 0400 file) and
  pass that path (or a :class:`SecretKeys`) as ``secret_key`` to restore it; ``verbose``
  never prints it;
* records with values outside [-1, 1] are refused instead of losing precision.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np

from client.keys import SecretKeys, load_secret_key, save_secret_key
from scoring.keys import parse_bundle

from .standard import REQUEST_MAGIC, RESULT_MAGIC, Framed, decode_frames, encode_frames, result_encoding, \
    standard_encoding


class EILinearRegressionClient:
    """Encrypts records for, and decrypts the scores of, :class:`eicompat.EIServer`.

    Args:
        secret_key: None for fresh keys, a :class:`SecretKeys`, or the path of a file written
            by :meth:`save_secret_key` (or :func:`client.save_secret_key`).
        session_id: an id for your own bookkeeping (random if None), as in 0.9.
        verbose: print what each call does (ids, sizes; never key material).

    Attributes:
        keys: the key pair; the secret half stays in this process.
        key_id: the public bundle's id (its SHA-256), the name to store it under.

    Example:
        >>> edp = EILinearRegressionClient()
        >>> name, data = edp.get_public_keys()
        >>> name == edp.key_id and len(data) < 140_000
        True
    """

    def __init__(self, secret_key: SecretKeys | str | Path | None = None, session_id: str | None = None,
                 verbose: bool = False) -> None:
        self.verbose = verbose
        if secret_key is None:
            self.keys = SecretKeys.generate()
        elif isinstance(secret_key, SecretKeys):
            self.keys = secret_key
        else:
            self.keys = load_secret_key(secret_key)
        self.session_id = session_id or secrets.token_hex(16)
        self.key_id = self.keys.key_id
        self._log(f"Session ID: {self.session_id}")
        self._log(f"Public keys ID: {self.key_id}")

    def get_public_keys(self) -> tuple[str, bytes]:
        """The name to store the public keys under, and their bytes (checked to hold no secret).

        Raises:
            KeysRejected: if the bundle would carry a secret key (then nothing is returned).
        """
        bundle = self.keys.public_bundle()
        parse_bundle(bundle, served=(self.keys.parameters,))
        self._log(f"Public keys generated: {len(bundle) / (1024 * 1024):.3f} MB")
        return self.key_id, bundle

    def encrypt(self, values) -> list[str]:
        """Encrypt one record: one base64 string (frame and seeded ciphertext) per chunk.

        Raises:
            ValueError: if ``values`` is not 1-D, or holds a value that is not finite or
                lies outside [-1, 1].
        """
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"values must be one record (1-D); got {x.ndim} dimensions")
        encoding = standard_encoding(x.size, parameters=self.keys.parameters)
        blobs = self.keys.encrypt_record(encoding, x)
        encrypted = encode_frames(REQUEST_MAGIC, Framed(x.size, 0, encoding.input_scale, blobs))
        self._log(f"Created {len(encrypted)} ciphertext(s) with a size of "
                  f"{sum(map(len, encrypted)) / 1024:.3f} KB")
        return encrypted

    def decrypt(self, response: list[str]) -> np.ndarray:
        """Decrypt ``EIServer.predict``'s result to the record's scores, shape (outputs,).

        Raises:
            ValueError: if the response is not a complete result for these keys.
        """
        result = decode_frames(RESULT_MAGIC, response, ValueError)
        self._log(f"Received encrypted response of size {sum(map(len, response))}")
        return self.keys.decrypt_scores(result_encoding(result, self.keys.parameters), result.ciphertexts)

    def save_secret_key(self, path: str | Path) -> Path:
        """Write the secret key to a new owner-read-only file (see :func:`client.save_secret_key`).

        Raises:
            FileExistsError: if ``path`` exists.
        """
        return save_secret_key(self.keys, path)

    def _log(self, message: str) -> None:
        if self.verbose:
            print(message)
