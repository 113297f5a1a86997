"""``EIServer``: the server half of ``encrypted-inference==0.9``'s API, on this project's core.

Code written for the original Azure ML tutorial runs with only its import line changed::

    from eicompat import EIServer                      # was: from encrypted.inference.eiserver import EIServer

    server = EIServer(model.coef_, model.intercept_, verbose=True)
    result = server.predict(data, public_keys)         # JSON-ready: a list of base64 strings

The public keys are the client's key bundle (parameters and public key, no Galois keys,
named by its SHA-256 as on the Functions app); the secret key never leaves the client.
Results are masked and re-randomized like every result of this service, and a record goes
through the same strict checks: :meth:`EIServer.predict` calls the typed data plane every
host calls (:meth:`scoring.service.ScoringService.score`) on a kernel with the standard
encoding (:mod:`eicompat.standard`).

Differences from 0.9: features beyond [-1, 1] are refused instead of losing precision;
``predict`` raises :class:`scoring.errors.ScoringError` subclasses (each with its HTTP
status) for keys or ciphertexts it refuses; it needs no storage credentials of its own.
"""

from __future__ import annotations

import time

import numpy as np

from scoring.ckks import runtime
from scoring.errors import BadRequest, CiphertextRejected
from scoring.keys import key_id_of
from scoring.model import LinearModel
from scoring.parameters import DEFAULT_PARAMETERS
from scoring.protocol import ScoreRequest
from scoring.service import ScoringService
from scoring.settings import Settings

from .standard import REQUEST_MAGIC, RESULT_MAGIC, STANDARD_INPUT_BOUND, Framed, decode_frames, encode_frames, \
    standard_kernel


class EIServer:
    """Scores records encrypted by :class:`eicompat.EILinearRegressionClient`.

    Args:
        coeffs: weights, shape (outputs, features), e.g. ``model.coef_``.
        intercept: shape (outputs,), e.g. ``model.intercept_``.
        verbose: print what each call does (sizes and timings; never key material).

    Raises:
        ValueError: if ``coeffs`` is not 2-D or ``intercept`` not 1-D of matching length,
            or (``ModelError``) the model does not fit the standard encoding.

    Example:
        >>> server = EIServer(model.coef_, model.intercept_)        # doctest: +SKIP
        >>> result = server.predict(data, public_keys)               # doctest: +SKIP
    """

    def __init__(self, coeffs, intercept, verbose: bool = False) -> None:
        coeffs, intercept = np.asarray(coeffs, dtype=np.float64), np.asarray(intercept, dtype=np.float64)
        if coeffs.ndim != 2 or intercept.ndim != 1:
            raise ValueError(f"coeffs must be 2-D and intercept 1-D; got {coeffs.ndim}-D and {intercept.ndim}-D")
        self.verbose = verbose
        model = LinearModel(coeffs, intercept, "regressor", input_bound=STANDARD_INPUT_BOUND, estimator="EIServer")
        self.kernel = standard_kernel(model, runtime(DEFAULT_PARAMETERS))
        self._service = ScoringService(Settings(parameters=DEFAULT_PARAMETERS))
        self._service.load(single=self.kernel)
        self._log(f"Model: {model.n_features} features, {model.n_outputs} outputs, "
                  f"{self.kernel.layout.n_chunks} ciphertext(s) per record")

    def predict(self, ciphertexts: list[str], public_keys: bytes) -> list[str]:
        """Compute the scores of one encrypted record; only the key owner can read them.

        Args:
            ciphertexts: what the client's ``encrypt`` returned (base64 strings).
            public_keys: the bundle the client's ``get_public_keys`` returned, as stored.

        Returns:
            One base64 string per result ciphertext, for the client's ``decrypt``.

        Raises:
            ValueError: if either argument is missing.
            BadRequest: if a ciphertext is not base64.
            KeysRejected: if the bundle does not parse or holds a secret key.
            CiphertextRejected: if the ciphertexts do not fit the model or parameters.
        """
        if ciphertexts is None or public_keys is None:
            raise ValueError("No input data given" if ciphertexts is None else "No public keys given")
        started = time.perf_counter()
        model = self.kernel.model
        record = decode_frames(REQUEST_MAGIC, ciphertexts, BadRequest)
        if record.n_features != model.n_features:
            raise CiphertextRejected(f"the record has {record.n_features} features; this model takes "
                                     f"{model.n_features}")
        bundle = bytes(public_keys)
        results = self._service.score(key_id_of(bundle), bundle, ScoreRequest(record.ciphertexts)).ciphertexts
        encoded = encode_frames(RESULT_MAGIC, Framed(model.n_features, model.n_outputs, self.kernel.output_scale,
                                                     results))
        self._log(f"Scored {len(ciphertexts)} ciphertext(s) in {(time.perf_counter() - started) * 1e3:.1f} ms; "
                  f"result {sum(map(len, encoded)) / 1024:.0f} KB in {len(encoded)} ciphertext(s)")
        return encoded

    def _log(self, message: str) -> None:
        if self.verbose:
            print(message)
