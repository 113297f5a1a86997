"""What a case is: one hostile input, where it goes, and which answers are acceptable.

A :class:`Case` names its target (a score request, a bundle upload, an ownership challenge,
a deletion), its bytes, the bundle stored under its key id, and what the service may
answer: the statuses, a text the refusal must contain, and whether a success must decrypt
to the plaintext model's scores. A :class:`Family` makes cases of one kind from a random
generator; the families live in ``bench.fuzz.families``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

ANY_4XX: frozenset[int] = frozenset()
OK = frozenset({200})
DELETED = frozenset({204})
S400, S403, S404, S409, S413, S415, S422 = (frozenset({s}) for s in (400, 403, 404, 409, 413, 415, 422))
JSON_TYPE, BINARY_TYPE = "application/json", "application/octet-stream"
CONTENT_TYPES = (JSON_TYPE, BINARY_TYPE, None, "", "text/json", "application/json; charset=utf-8",
                 "APPLICATION/OCTET-STREAM", "text/plain", "multipart/form-data; boundary=x",
                 "application/x-www-form-urlencoded")
BAD_KEY_IDS = ("../" + "a" * 61, "..%2f" + "a" * 59, "A" * 64, "ABCDEF" + "0" * 58, "a" * 63, "a" * 65,
               "g" * 64, "a" * 63 + "/", "a" * 63 + "\n", "a" * 63 + "\x00", "\uff10" * 64, " " + "a" * 63,
               "a" * 32 + "-" + "a" * 31, "", "..", "0x" + "a" * 62)
KEY_ID_MESSAGE = "64 lowercase hex"
VERSION_1_MESSAGE = "protocol version 1 is not supported"
HUGE = 1 << 30  # bombs inflate to 1 GB


class Target(enum.Enum):
    """Where a case goes: the core's verb, and the route a host serves it on."""

    SCORE = "POST /api/score/{key_id}"
    UPLOAD = "PUT /api/keys/{key_id}"
    CHALLENGE = "POST /api/keys/{key_id}/challenge"
    DELETE = "DELETE /api/keys/{key_id}"


class Stored(enum.Enum):
    """The bundle stored under a case's key id, when it is not given as bytes."""

    OWN = "the material's own bundle"
    NONE = "nothing"


@dataclass(frozen=True)
class Case:
    """One hostile input and what the service may answer.

    Attributes:
        label: what the mutation was, for reports.
        target: which verb and route it goes to.
        key_id: the id in the URL; None means the material's (sha256 of the body for an upload).
        bundle: what is stored under the key id: bytes (a hostile bundle, written behind the
            API over HTTP), or the material's own bundle, or nothing.
        expect: the statuses allowed; empty means any 4xx (plus a success if ``may_succeed``).
        match: a text the refusal's message must contain.
        exact: a success must decrypt, with ``owner``'s secret key, to the model's scores of
            the material's record (or batch, for ``records`` records).
        owner: which keys made the request: "" for the material's, else a crafted key's name.
        records: the record count a successful batch answer must declare and disclose.
        proof: for a deletion, the ``X-Key-Proof`` value (None: no header), unless ``derive``
            makes it from the true answer to the pending challenge; ``stale``: the answer
            comes after the challenge expired.
    """

    label: str
    body: bytes = b""
    target: Target = Target.SCORE
    content_type: str | None = None
    key_id: str | None = None
    bundle: bytes | Stored = Stored.OWN
    expect: frozenset[int] = ANY_4XX
    may_succeed: bool = False
    match: str | None = None
    exact: bool = False
    owner: str = ""
    records: int | None = None
    proof: str | None = None
    derive: Callable[[str], str] | None = None
    stale: bool = False
    category: str = ""
    index: int = 0

    def judge(self, status: int, message: str = "") -> str | None:
        """None if ``status`` is an acceptable answer, else why not."""
        if status >= 500:
            return f"{status} (server error): {message}"
        if self.expect:
            if status not in self.expect:
                return f"status {status} where {sorted(self.expect)} was expected: {message}"
        elif not (400 <= status < 500 or (status < 300 and self.may_succeed)):
            return f"status {status} where a 4xx was expected: {message}"
        if self.match and status >= 300 and self.match not in message:
            return f"message {message!r} does not mention {self.match!r}"
        return None

    def proof_for(self, answer: str) -> str | None:
        """The ``X-Key-Proof`` header value, given the true answer to the pending challenge."""
        return self.derive(answer) if self.derive is not None else self.proof


@dataclass(frozen=True)
class Family:
    """A kind of case: how often it is drawn, and how one is made from a random generator.

    Attributes:
        weight: relative share of the cases.
        make: builds one case from a ``bench.fuzz.mutator.Mutator`` and a ``random.Random``;
            every decision comes from that generator.
        needs_batches: only drawn when the service has a batch path.
    """

    weight: float
    make: Callable[..., Case]
    needs_batches: bool = False
