"""Run cases against the core in this process, as a host would, and judge every answer.

:func:`call` does what a host does with a case (``protocol.read_request`` under the
service's limits, ``ScoringService.score``, the response in the request's form; or
``check_upload``; or a challenge and the proof check of a deletion) and returns an
:class:`Answer`. :func:`verdict` judges any answer, in process or over HTTP: the status,
the refusal's message, and for a success that it decrypts, holds what it says it holds
(``X-Records-Disclosed``), and, for an unmutated request, that it decrypts to the plaintext
model's scores.
"""

from __future__ import annotations

import base64
import faulthandler
import json
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from scoring import ownership, protocol
from scoring.errors import ScoringError
from scoring.keys import key_id_of

from .cases import JSON_TYPE, Case, Stored, Target
from .material import Material
from .memory import PeakMemory
from .report import Stats

TOLERANCE = 1e-4  # the service's noise is 2**-19 at most; encryption noise is far below


@dataclass(frozen=True)
class Answer:
    """What the service answered a case.

    Attributes:
        status: the HTTP status (in process: the ScoringError's, or 200/204).
        message: the refusal's message.
        body, content_type: a success's body and its type.
        disclosed: the ``X-Records-Disclosed`` value of a score response.
        problem: what is wrong beyond the status (an error body that is not the JSON error,
            a bundle lost without a correct proof), or None.
    """

    status: int
    message: str = ""
    body: bytes = b""
    content_type: str | None = None
    disclosed: str | None = None
    problem: str | None = None


def key_id_for(case: Case, material: Material) -> str:
    """The key id a case names: its own, else the upload's hash or the material's."""
    if case.key_id is not None:
        return case.key_id
    return key_id_of(case.body) if case.target is Target.UPLOAD else material.key_id


def bundle_for(case: Case, material: Material) -> bytes | None:
    """The bundle stored under the case's key id, or None."""
    if case.bundle is Stored.OWN:
        return material.bundle
    return None if case.bundle is Stored.NONE else case.bundle


def challenge_document(key_id: str, challenge: ownership.Challenge) -> dict:
    """The challenge route's answer."""
    return {"key_id": key_id, "challenge": base64.b64encode(challenge.ciphertext).decode("ascii"),
            "expires_in": ownership.CHALLENGE_SECONDS}


def call(service, material: Material, case: Case) -> Answer:
    """Run one case against the core as a host would.

    Any exception other than a ScoringError propagates: it is a finding.
    """
    key_id = key_id_for(case, material)
    try:
        if case.target is Target.UPLOAD:
            service.check_upload(key_id, case.body)
            return Answer(200)
        bundle = bundle_for(case, material)
        if case.target is Target.SCORE:
            request, form = protocol.read_request(case.body, case.content_type, service.limits)
            response = service.score(key_id, bundle, request)
            return Answer(200, body=protocol.encode_response(response, form), content_type=form.content_type,
                          disclosed=str(response.disclosed))
        challenge = service.challenge(key_id, bundle)
        if case.target is Target.CHALLENGE:
            return Answer(200, body=json.dumps(challenge_document(key_id, challenge)).encode(), content_type=JSON_TYPE)
        answer = material.owner.answer_challenge(challenge.ciphertext)
        now = challenge.expires + 1 if case.stale else None  # stale: answered after it expired
        ownership.verify(case.proof_for(answer), challenge.nonce, challenge.expires, now=now)
        return Answer(204)
    except ScoringError as exc:
        return Answer(exc.status, exc.message)


def check_success(material: Material, case: Case, answer: Answer) -> str | None:
    """Why a success is wrong, or None: a score answer must be for the served model, disclose
    what it holds, and decrypt; an unmutated request's answer must decrypt to the model's
    scores for the declared records. A challenge must decrypt with the owner's key.

    Raises:
        Exception: whatever decoding or decryption raises (the caller reports it).
    """
    keys = material.keys_for(case.owner)
    if case.target is Target.CHALLENGE:
        if case.key_id is None or case.owner:  # a challenge for keys we hold
            keys.answer_challenge(base64.b64decode(json.loads(answer.body)["challenge"]))
        return None
    if case.target is not Target.SCORE:
        return None
    response = protocol.decode_response(answer.body, answer.content_type)
    if response.model_hash != material.model_hash:
        return f"answered for model {response.model_hash}, not the served {material.model_hash}"
    if answer.disclosed != str(response.disclosed):
        return f"X-Records-Disclosed is {answer.disclosed!r} for an answer of {response.disclosed} record(s)"
    if response.records is None:
        scores = keys.decrypt_scores(material.record_encoding, response.ciphertexts)
        expected = np.asarray(material.expected)[None, :]
        scores = scores[None, :]
    elif material.batch is None:
        return f"a batch answer ({response.records} records) from a service without a batch path"
    else:
        scores = keys.decrypt_columns(material.batch.encoding, response.ciphertexts, response.records)
        expected = material.batch.expected_scores(response.records)
    if not case.exact:
        return None
    if response.records != case.records:
        return f"answered {response.records} record(s) where {case.records} were declared"
    if scores.shape != expected.shape or not np.allclose(scores, expected, atol=TOLERANCE):
        worst = float(np.max(np.abs(scores - expected))) if scores.shape == expected.shape else float("nan")
        return f"accepted, but the scores are off by {worst:.3g} (shape {scores.shape})"
    return None


def verdict(material: Material, case: Case, answer: Answer) -> str | None:
    """None if the answer is acceptable for the case, else why not."""
    if answer.problem:
        return answer.problem
    why = case.judge(answer.status, answer.message)
    if why is None and answer.status < 300:
        try:
            why = check_success(material, case, answer)
        except Exception as exc:  # noqa: BLE001 - an accepted answer that does not decrypt is the finding
            why = f"accepted, but the answer does not decrypt: {type(exc).__name__}: {exc}"
    return why


def run(service, material: Material, cases: Iterable[Case], *, progress: Callable[[Case], None] | None = None,
        case_timeout: float | None = None) -> Stats:
    """Run cases against the core in this process and collect the figures.

    With ``case_timeout``, a case that takes longer ends the process with a traceback
    (``faulthandler``): run it in a child (``bench.fuzz.isolation``).
    """
    memory = PeakMemory()
    stats = Stats()
    for case in cases:
        if progress is not None:
            progress(case)
        if case_timeout:
            faulthandler.dump_traceback_later(case_timeout, exit=True)
        start_kb = memory.start()
        started = time.perf_counter()
        try:
            answer = call(service, material, case)
            status, failure = answer.status, None
        except Exception as exc:  # noqa: BLE001 - every other exception is the finding
            status = type(exc).__name__
            failure = f"{status}: {exc}\n" + "".join(traceback.format_exc(limit=-6))
        ms = (time.perf_counter() - started) * 1e3
        peak_kb = memory.peak()
        if failure is None:
            failure = verdict(material, case, answer)
        stats.record(case, status, ms, start_kb, peak_kb, failure)
    if case_timeout:
        faulthandler.cancel_dump_traceback_later()
    return stats
