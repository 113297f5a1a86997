"""The same cases against a running app, over HTTP, with the key store behind it.

:class:`HttpTarget` sends a case to its route and returns an
:class:`~bench.fuzz.runner.Answer` for :func:`~bench.fuzz.runner.verdict`. A hostile bundle a
case stores under its key id is written straight to storage first (as a client with its own
storage could). A deletion asks for a challenge, answers it with the material's keys and
sends the case's ``X-Key-Proof``; afterwards the bundle must still be stored unless the
answer was 204, and a deleted bundle is uploaded again so the next cases find it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import requests

from scoring.keys import KEY_ID_PATTERN
from scoring.ownership import PROOF_HEADER
from scoring.protocol import RECORDS_HEADER

from .cases import Case, Target
from .material import Material
from .runner import Answer, bundle_for, key_id_for


@dataclass(frozen=True)
class KeyStore:
    """What the target needs of the storage behind the app: write a blob, ask if one exists, and
    make a blob's pending challenge expire (as if its five minutes had passed)."""

    put: Callable[[str, bytes], None]
    exists: Callable[[str], bool]
    expire_challenge: Callable[[str], None]


def url_key(key_id: str) -> str:
    """A key id as one URL path segment, every character but ASCII letters and digits escaped."""
    return "".join(c if c.isascii() and c.isalnum() else quote(c, safe="").replace(".", "%2E") for c in key_id)


class HttpTarget:
    """Sends cases to an app at ``url`` (``/api/...`` routes) whose bundles are in ``store``."""

    def __init__(self, url: str, material: Material, store: KeyStore, *, session: requests.Session | None = None,
                 timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.m = material
        self.store = store
        self.session = session or requests.Session()
        self.timeout = timeout
        self.written: set[str] = set()  # key ids stored behind the API
        self.deleted = 0  # deletions with a correct proof (the bundle was uploaded again)

    def request(self, method: str, route: str, key_id: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.url}/api/{route.format(key_id=url_key(key_id))}",
                                    timeout=self.timeout, **kwargs)

    def send(self, case: Case) -> Answer | None:
        """The app's answer to ``case``; None if the case cannot travel over HTTP (an empty key
        id matches no route: the host's 404, before the app)."""
        key_id = key_id_for(case, self.m)
        if not key_id:
            return None
        bundle = bundle_for(case, self.m)
        if (case.target is not Target.UPLOAD and bundle is not None and key_id != self.m.key_id
                and KEY_ID_PATTERN.fullmatch(key_id)):
            self.store.put(key_id, bundle)
            self.written.add(key_id)
        headers = {} if case.content_type is None else {"Content-Type": case.content_type}
        if case.target is Target.SCORE:
            return self.answer(self.request("POST", "score/{key_id}", key_id, data=case.body, headers=headers))
        if case.target is Target.UPLOAD:
            response = self.request("PUT", "keys/{key_id}", key_id, data=case.body, headers=headers)
            answer = self.answer(response)
            return Answer(200) if response.status_code == 201 else answer  # 201 stored, 200 already there
        challenge = self.request("POST", "keys/{key_id}/challenge", key_id, data=case.body, headers=headers)
        if case.target is Target.CHALLENGE:
            return self.answer(challenge)
        return self.delete(case, key_id, challenge)

    def delete(self, case: Case, key_id: str, challenge: requests.Response) -> Answer:
        proof = case.proof
        if challenge.status_code == 200:
            answer = self.m.owner.answer_challenge(base64.b64decode(challenge.json()["challenge"]))
            if case.stale:
                self.store.expire_challenge(key_id)
            proof = case.proof_for(answer)
        headers = {} if proof is None else {PROOF_HEADER: proof}
        answer = self.answer(self.request("DELETE", "keys/{key_id}", key_id, headers=headers))
        if key_id != self.m.key_id:
            return answer
        if answer.status == 204:
            self.deleted += 1
            restored = self.request("PUT", "keys/{key_id}", key_id, data=self.m.bundle)
            if restored.status_code != 201:
                return Answer(answer.status, problem=f"the deleted bundle could not be stored again: "
                                                     f"{restored.status_code} {restored.text[:200]}")
        elif not self.store.exists(key_id):
            return Answer(answer.status, answer.message, problem=f"{answer.status}, yet the bundle is gone")
        return answer

    @staticmethod
    def answer(response: requests.Response) -> Answer:
        """An Answer from a response; a refusal must be the JSON error ``{"error", "message"}``."""
        status = response.status_code
        if status < 400:
            return Answer(status, body=response.content, content_type=response.headers.get("content-type"),
                          disclosed=response.headers.get(RECORDS_HEADER))
        if status >= 500:
            return Answer(status, response.text[:300])
        if not response.headers.get("content-type", "").startswith("application/json"):
            return Answer(status, problem=f"{status} without a JSON body: {response.text[:200]!r}")
        try:
            body = response.json()
        except ValueError:
            return Answer(status, problem=f"{status} with a body that is not JSON: {response.text[:200]!r}")
        if (not isinstance(body, dict) or set(body) != {"error", "message"}
                or not all(isinstance(v, str) and v for v in body.values())):
            return Answer(status, problem=f"{status} with an error body {body!r}")
        return Answer(status, body["message"])
