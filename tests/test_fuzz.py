"""Hostile input: thousands of mutated requests, bundles, challenges and deletions against the
core, hundreds over HTTP.

The inputs come from ``bench/fuzz/`` (mutations of a real request, a real batch, a real
bundle and crafted keys). The core run happens in a child process with an address-space
limit and deadlines, so a crash, a hang or a balloon fails the test with the case that
caused it instead of taking pytest down. ``python -m bench.fuzz`` prints the same figures.
"""

from __future__ import annotations

import base64
import dataclasses
import time

import numpy as np
import pytest
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from bench import fuzz
from bench.fuzz.blobs import claiming_fields, key_bundle
from bench.fuzz.over_http import HttpTarget, KeyStore, url_key
from keystore.blobs import CHALLENGE_EXPIRES
from bench.fuzz.runner import key_id_for
from client import ScoringClient
from client.keys import SecretKeys
from helpers import score_bytes
from scoring import protocol
from scoring.ckks import HEADER_SIZE
from scoring.errors import BadRequest, CiphertextRejected, KeysRejected, ScoringError
from scoring.keys import KEY_ID_PATTERN, key_id_of
from scoring.ownership import PROOF_HEADER
from scoring.protocol import RECORDS_HEADER, ScoreRequest, WireForm

CORE_CASES = 4000
HTTP_CASES = 300
# Safety bounds, with margin over what was measured (python -m bench.fuzz reports the figures):
# about 75 MB of growth over the whole run (cached bundles, a batch's columns) and at most
# about 0.1 s for the slowest rejection (a batch; most are under 5 ms) on 2 busy cores.
MAX_GROWTH_MB = 300
MAX_REJECTION_MS = 500
BOMB_MAX_MS, BOMB_MAX_MB = 100, 20
CONTAINER = "httpkeys"  # the http_app fixture's keys container
NEW_FAMILIES = ("keys.crafted", "keys.challenge", "keys.delete", "batch.records", "request.version_1")


@pytest.fixture(scope="module")
def material(service):
    """Valid inputs from a fresh key of our own (``material.owner``) and crafted keys."""
    return fuzz.build_material(service, SecretKeys.generate(), fuzz.default_record(service, 0))


@pytest.fixture(scope="module")
def fuzzer(material):
    fuzzer = fuzz.Fuzzer(material, seed=1)
    fuzzer.prepare()
    return fuzzer


@pytest.fixture(scope="module", autouse=True)
def core_run(request, digits_model_path):
    """The thousands of core cases, started in their child process with the module and collected
    by its last test, so that they run beside the HTTP tests (two cores) instead of before them."""
    if not any(item.name == "test_thousands_of_hostile_inputs_to_the_core" for item in request.session.items):
        yield None
        return
    run = fuzz.start_isolated(CORE_CASES, seed=0, model=digits_model_path, timeout=300, case_timeout=10,
                              mem_limit_mb=1024)
    yield run
    run.stop()


def container_client(azurite):
    """The keys container, created if no upload has created it yet."""
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(CONTAINER)
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    return container


@pytest.fixture()
def behind_the_api(azurite):
    """Names of blobs a test writes straight to storage; deleted afterwards, pass or fail."""
    names: set[str] = set()
    yield names
    container = container_client(azurite)
    for name in names:
        try:
            container.delete_blob(name)
        except ResourceNotFoundError:
            pass


def stored(azurite, name: str) -> bytes | None:
    try:
        return container_client(azurite).download_blob(name).readall()
    except ResourceNotFoundError:
        return None


def upload_own(http_app, m: fuzz.Material) -> None:
    response = requests.put(f"{http_app.url}/api/keys/{m.key_id}", data=m.bundle, timeout=30)
    assert response.status_code in (200, 201), response.text[:200]


def post_score(http_app, key_id: str, body: bytes, content_type: str | None) -> requests.Response:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return requests.post(f"{http_app.url}/api/score/{url_key(key_id)}", data=body, headers=headers, timeout=30)


def explain(report: dict) -> str:
    kinds = "\n".join(f"  {count} x {kind}" for kind, count in report["failure_kinds"].items())
    examples = "\n".join(f"  #{f['index']} {f['category']} ({f['label']}): {f['failure'][:600]}"
                         for f in report["failures"][:8])
    return f"{report['failure_count']} failure(s) in {report['cases']} cases:\n{kinds}\nexamples:\n{examples}"


# -- (a) the harness, the determinism of the cases, the verdict ------------------------------------


@pytest.mark.parametrize("fault,message", [
    ("segv", "killed by SIGSEGV"),
    ("hang", "exceeded the per-case deadline"),
    ("balloon", "ran out of its address-space limit"),
])
def test_the_harness_reports_a_crash_a_hang_and_a_balloon(fault, message):
    with pytest.raises(fuzz.FuzzFailure, match=message) as caught:
        fuzz.run_isolated(selftest=fault, case_timeout=1, mem_limit_mb=256, timeout=60)
    assert f"selftest.{fault}" in str(caught.value)  # names the case it was running


def test_cases_are_deterministic(material):
    first = fuzz.Fuzzer(material, seed=7)
    second = fuzz.Fuzzer(material, seed=7)
    for a, b in zip(first.cases(200), second.cases(200)):
        assert (a.category, a.label, a.body, a.content_type, a.key_id, a.expect) == (
            b.category, b.label, b.body, b.content_type, b.key_id, b.expect)


def test_the_verdict_catches_a_wrong_answer(service, material):
    """A success that decrypts to other scores, or discloses another record count, is a failure."""
    m = material
    body, content_type = m.request()
    case = fuzz.Case("valid", body, content_type=content_type, expect=frozenset({200}), may_succeed=True, exact=True)
    answer = fuzz.call(service, m, case)
    assert fuzz.verdict(m, case, answer) is None
    other = dataclasses.replace(m, expected=tuple(e + 0.01 for e in m.expected))
    assert "scores are off" in fuzz.verdict(other, case, answer)
    lying = fuzz.Answer(200, body=answer.body, content_type=answer.content_type, disclosed="2")
    assert "X-Records-Disclosed" in fuzz.verdict(m, case, lying)


# -- (b) hundreds of cases over HTTP: Functions app, local host, Azurite ------------------------


def test_hundreds_of_hostile_requests_over_http(http_app, azurite, material, fuzzer, digits, digits_estimator,
                                                behind_the_api):
    m = material
    upload_own(http_app, m)
    container = container_client(azurite)
    before = {blob.name for blob in container.list_blobs()}  # other modules' clients share the container

    def put(name: str, data: bytes) -> None:
        container.upload_blob(name, data, overwrite=True)

    def expire(name: str) -> None:
        blob = container.get_blob_client(name)
        blob.set_blob_metadata({**blob.get_blob_properties().metadata, CHALLENGE_EXPIRES: "1"})

    target = HttpTarget(http_app.url, m, KeyStore(put, lambda name: container.get_blob_client(name).exists(), expire))
    accepted, rejected, failures = set(), set(), []
    statuses: dict[int, int] = {}
    slowest = (0.0, "")
    try:
        for case in fuzzer.cases(HTTP_CASES):
            started = time.perf_counter()
            answer = target.send(case)
            if answer is None:
                continue
            ms = (time.perf_counter() - started) * 1e3
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            where = f"#{case.index} {case.category} ({case.label}): {answer.status}"
            if answer.status >= 400:
                slowest = max(slowest, (ms, where))
            why = fuzz.verdict(m, case, answer)
            if why:
                failures.append(f"{where}: {why}")
            key_id = key_id_for(case, m)
            if case.target is fuzz.Target.UPLOAD and KEY_ID_PATTERN.fullmatch(key_id):
                (accepted if answer.status == 200 else rejected).add(key_id)
    finally:
        behind_the_api.update(target.written)
    print(f"\nHTTP: {sum(statuses.values())} cases, statuses {dict(sorted(statuses.items()))}, "
          f"{target.deleted} deletion(s) with a correct proof, slowest rejection {slowest[0]:.1f} ms ({slowest[1]})")
    assert not failures, f"{len(failures)} of {sum(statuses.values())} cases failed:\n" + "\n".join(failures[:25])
    assert not [s for s in statuses if s >= 500]
    assert sum(statuses.values()) >= 0.9 * HTTP_CASES  # only cases with an empty key id cannot be routed
    assert statuses.get(403), "no deletion was tried with a wrong proof"

    names = {blob.name for blob in container.list_blobs()} - before
    refused_but_stored = (names & rejected) - accepted - target.written
    assert not refused_but_stored, f"refused bundles were stored: {sorted(refused_but_stored)[:5]}"
    assert names <= {m.key_id} | accepted | target.written, sorted(names - ({m.key_id} | accepted | target.written))
    assert stored(azurite, m.key_id) == m.bundle  # nothing stored was lost
    body, content_type = m.request()
    for key_id in sorted(rejected - accepted - target.written)[:10]:  # refused: neither stored nor served
        assert post_score(http_app, key_id, body, content_type).status_code == 404

    # the worker still serves correct answers
    client = ScoringClient(http_app.url, timeout=60)
    rows = digits[0][1500:1505]
    np.testing.assert_array_equal(client.predict(rows), digits_estimator.predict(rows))
    np.testing.assert_allclose(client.decision_function(rows), digits_estimator.decision_function(rows), atol=1e-5)
    assert client.delete_keys()


# -- (c) the named cases --------------------------------------------------------------------------


def bombs(m: fuzz.Material) -> dict[str, bytes]:
    """Ciphertext-shaped decompression bombs: 1 GB of zeros in about 32 KB (zstd), 64 MB in 64 KB (zlib)."""
    v = m.seal_version
    claims = m.claiming_fields(parts=1 << 17, scale=m.input_scale)
    return {
        "zstd, 1 GB of zeros behind fields claiming 2^17 parts": fuzz.bomb(v, claims, 1 << 30, "zstd"),
        "zstd, 1 GB of zeros": fuzz.bomb(v, b"", 1 << 30, "zstd"),
        "zstd, 256 MB of zeros with a 128 MB window": fuzz.bomb(v, b"", 256 << 20, "zstd", window_log=27),
        "zlib, 64 MB of zeros behind fields claiming 2^17 parts": fuzz.bomb(v, claims, 64 << 20, "zlib"),
    }


def bundle_bombs(m: fuzz.Material) -> dict[str, bytes]:
    v = m.seal_version
    blobs = {"zstd, 1 GB of zeros behind public-key fields claiming 2^17 parts": fuzz.bomb(
                 v, m.claiming_fields(parts=1 << 17, scale=1.0), 1 << 30, "zstd"),
             "zlib, 256 MB of zeros behind public-key fields": fuzz.bomb(
                 v, m.claiming_fields(parts=2, scale=1.0), 256 << 20, "zlib")}
    return {name: m.bundle_with([(b"PKEY", blob)]) for name, blob in blobs.items()}


def measured(call) -> tuple[BaseException | None, float, float]:
    """Run ``call``; return what it raised, milliseconds, and peak RSS growth in MB."""
    memory = fuzz.PeakMemory()
    start_kb = memory.start()
    started = time.perf_counter()
    raised = None
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - returned to the caller
        raised = exc
    ms = (time.perf_counter() - started) * 1e3
    return raised, ms, max(0, memory.peak() - start_kb) / 1024


def test_decompression_bombs_are_rejected_quickly_with_small_memory(service, material):
    m = material
    figures = []
    for name, blob in bombs(m).items():
        body, content_type = m.request([blob])
        raised, ms, mb = measured(lambda: score_bytes(service, m.key_id, m.bundle, body, content_type))
        figures.append(f"{name}: {len(blob)} bytes, {ms:.1f} ms, +{mb:.1f} MB")
        assert isinstance(raised, CiphertextRejected), (name, raised)
        assert ms < BOMB_MAX_MS and mb < BOMB_MAX_MB, figures[-1]
    for name, bundle_bytes in bundle_bombs(m).items():
        key_id = key_id_of(bundle_bytes)
        raised, ms, mb = measured(lambda: service.check_upload(key_id, bundle_bytes))
        figures.append(f"bundle {name}: {len(bundle_bytes)} bytes, {ms:.1f} ms, +{mb:.1f} MB")
        assert isinstance(raised, KeysRejected), (name, raised)
        assert ms < BOMB_MAX_MS and mb < BOMB_MAX_MB, figures[-1]
        raised, ms, mb = measured(lambda: service.score(key_id, bundle_bytes, ScoreRequest(m.ciphertexts)))
        assert isinstance(raised, KeysRejected) and not service.bundles.contains(key_id)
        assert ms < BOMB_MAX_MS and mb < BOMB_MAX_MB, (name, ms, mb)
    print("\n" + "\n".join(figures))


def test_decompression_bombs_over_http_are_422_and_not_stored(http_app, azurite, material):
    m = material
    upload_own(http_app, m)
    for name, blob in bombs(m).items():
        response = post_score(http_app, m.key_id, *m.request([blob]))
        assert response.status_code == 422 and response.json()["error"] == "ciphertext_rejected", name
    for name, bundle_bytes in bundle_bombs(m).items():
        key_id = key_id_of(bundle_bytes)
        response = requests.put(f"{http_app.url}/api/keys/{key_id}", data=bundle_bytes, timeout=30)
        assert response.status_code == 422 and response.json()["error"] == "keys_rejected", name
        assert stored(azurite, key_id) is None
        assert post_score(http_app, key_id, *m.request()).status_code == 404, name


def secret_bundles(m: fuzz.Material) -> dict[str, bytes]:
    public = m.public_key_blob()
    return {
        "a SKEY section after the public key": m.bundle_with([(b"PKEY", public), (b"SKEY", m.secret_key)]),
        "the secret key in the PKEY section, as SEAL saves it": m.bundle_with([(b"PKEY", m.secret_key)]),
        "the secret key in the PKEY section, uncompressed": m.bundle_with([(b"PKEY", m.secret_key_raw)]),
        "a SECK section before the public key": m.bundle_with([(b"SECK", m.secret_key_raw), (b"PKEY", public)]),
    }


def test_bundles_holding_a_secret_key_are_422_neither_stored_nor_cached(http_app, azurite, service, material):
    m = material
    body, content_type = m.request()
    for name, bundle_bytes in secret_bundles(m).items():
        key_id = key_id_of(bundle_bytes)
        response = requests.put(f"{http_app.url}/api/keys/{key_id}", data=bundle_bytes, timeout=30)
        assert response.status_code == 422, name
        assert response.json()["error"] == "keys_rejected" and "secret key" in response.json()["message"], name
        assert stored(azurite, key_id) is None, name
        assert post_score(http_app, key_id, body, content_type).status_code == 404, name  # nothing stored
        # written straight to storage (as upload_keys_to_blob could): still refused, on every route
        container_client(azurite).upload_blob(key_id, bundle_bytes, overwrite=True)
        try:
            score = post_score(http_app, key_id, body, content_type)
            assert score.status_code == 422 and "secret key" in score.json()["message"], name
            challenge = requests.post(f"{http_app.url}/api/keys/{key_id}/challenge", timeout=30)
            assert challenge.status_code == 422 and "secret key" in challenge.json()["message"], name
        finally:
            container_client(azurite).delete_blob(key_id)
        # in-process: the same, and never cached
        with pytest.raises(KeysRejected, match="secret key"):
            service.check_upload(key_id, bundle_bytes)
        with pytest.raises(KeysRejected, match="secret key"):
            score_bytes(service, key_id, bundle_bytes, body, content_type)
        assert not service.bundles.contains(key_id)


@pytest.mark.parametrize("key_id", ["../" + "a" * 61, "../../../../etc/passwd", "..", "A" * 64,
                                    "ABCDEF" + "0" * 58, "a" * 63 + "/", "..%2F" + "a" * 59])
def test_key_ids_with_dot_dot_or_uppercase_are_400(http_app, service, material, key_id):
    m = material
    key_id = m.key_id.upper() if key_id == "A" * 64 else key_id
    body, content_type = m.request()
    for method, route, data in (("POST", "score/{}", body), ("PUT", "keys/{}", m.bundle), ("DELETE", "keys/{}", b""),
                                ("POST", "keys/{}/challenge", b"")):
        response = requests.request(method, f"{http_app.url}/api/{route.format(url_key(key_id))}", data=data,
                                    headers={"Content-Type": content_type, PROOF_HEADER: "0" * 32}, timeout=30)
        assert response.status_code == 400, (method, route, response.text[:200])
        assert response.json() == {"error": "bad_request", "message": (
            "key id must be 64 lowercase hex characters (the SHA-256 of the key bundle)")}
    for call in (lambda: score_bytes(service, key_id, m.bundle, body, content_type),
                 lambda: service.check_upload(key_id, m.bundle), lambda: service.forget(key_id),
                 lambda: service.challenge(key_id, m.bundle)):
        with pytest.raises(BadRequest, match="64 lowercase hex"):
            call()


def test_version_1_messages_are_400_saying_so(http_app, service, material):
    m = material
    upload_own(http_app, m)
    for form in WireForm:
        body = protocol.encode_request(ScoreRequest(m.ciphertexts, m.model_hash), form)
        old = body.replace(b'"version":2', b'"version":1') if form is WireForm.JSON else body[:4] + b"\x01" + body[5:]
        with pytest.raises(BadRequest, match="protocol version 1 is not supported"):
            score_bytes(service, m.key_id, m.bundle, old, form.content_type)
        response = post_score(http_app, m.key_id, old, form.content_type)
        assert response.status_code == 400 and "protocol version 1 is not supported" in response.json()["message"]
        assert post_score(http_app, m.key_id, body, form.content_type).status_code == 200  # version 2 is served


# -- crafted keys and the ownership routes over HTTP -----------------------------------------------


def test_crafted_public_keys_over_http(http_app, azurite, material, behind_the_api):
    """Secrets of 0, 1 and -1 are refused by name on upload and when stored behind the API; a
    sparse secret that passes is served, its answers decrypt right, and it can delete its bundle."""
    m = material
    body, content_type = m.request()
    for key in m.crafted.values():
        response = requests.put(f"{http_app.url}/api/keys/{key.key_id}", data=key.bundle, timeout=30)
        if key.refusal is not None:
            assert response.status_code == 422 and response.json()["error"] == "keys_rejected", key.name
            assert f"visibly malformed: {key.refusal}" in response.json()["message"], key.name
            assert stored(azurite, key.key_id) is None
            container_client(azurite).upload_blob(key.key_id, key.bundle, overwrite=True)
            behind_the_api.add(key.key_id)
            score = post_score(http_app, key.key_id, body, content_type)
            assert score.status_code == 422 and key.refusal in score.json()["message"], key.name
            continue
        assert response.status_code in (200, 201), (key.name, response.text[:200])
        for chunks in (key.ciphertexts, key.exact_ciphertexts):
            answer = post_score(http_app, key.key_id, *m.request(chunks))
            assert answer.status_code == 200 and answer.headers[RECORDS_HEADER] == "1"
            reply = protocol.decode_response(answer.content, answer.headers["content-type"])
            np.testing.assert_allclose(key.keys.decrypt_scores(m.record_encoding, reply.ciphertexts), m.expected,
                                       atol=1e-4)
        client = ScoringClient(http_app.url, keys=key.keys, timeout=60)
        assert client.delete_keys() and stored(azurite, key.key_id) is None


def test_no_deletion_without_the_decrypted_answer(http_app, azurite, material):
    """Proofs that are malformed, wrong or someone else's are 403, and the bundle stays; a stranger's
    challenge requests do not displace the owner's pending one."""
    m = material
    upload_own(http_app, m)
    stranger = next(key for key in m.crafted.values() if key.refusal is None)

    def challenge() -> bytes:
        response = requests.post(f"{http_app.url}/api/keys/{m.key_id}/challenge", timeout=30)
        assert response.status_code == 200
        return base64.b64decode(response.json()["challenge"])

    def delete(proof: str | None) -> requests.Response:
        headers = {} if proof is None else {PROOF_HEADER: proof}
        return requests.delete(f"{http_app.url}/api/keys/{m.key_id}", headers=headers, timeout=30)

    answer = m.owner.answer_challenge(challenge())
    try:
        theirs = stranger.keys.answer_challenge(challenge())  # decrypts to the wrong bytes, if to bytes at all
    except ValueError:
        theirs = "0" * 32
    for proof in (None, "", theirs, answer.upper(), answer[:-1], "\u00e9" * 32, "a" * 4000):
        response = delete(proof)
        assert response.status_code == 403 and response.json()["error"] == "proof_required", proof
        assert stored(azurite, m.key_id) == m.bundle
    assert delete(answer).status_code == 204  # the answer from before the stranger's requests
    assert stored(azurite, m.key_id) is None
    upload_own(http_app, m)


# -- bugs the fuzzing found: minimal failing cases ---------------------------------------------------


DEEP_LIST = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
HUGE_INTEGER = b'{"version":2' + b"0" * 5000 + b',"ciphertexts":["AAAA"]}'


@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT, HUGE_INTEGER], ids=["deep-list", "deep-object", "huge-int"])
def test_json_the_parser_cannot_take_is_400(service, keys, body):
    """json.loads raises RecursionError (deep nesting) or a plain ValueError (an integer over
    sys.get_int_max_str_digits()); both must be a 400, never a 500."""
    with pytest.raises(BadRequest):
        protocol.decode_request(body, "application/json")
    with pytest.raises(ScoringError) as caught:
        score_bytes(service, keys.key_id, keys.public_bundle(), body, "application/json")
    assert caught.value.status == 400


def test_ciphertext_with_a_zero_second_part_is_422(service, material):
    """It loads, but SEAL's multiply_plain then throws 'result ciphertext is transparent'."""
    m = material
    for mode in ("none", "zstd"):
        blob = fuzz.reencode(m.seal_version, fuzz.with_zero_parts(m.full_ciphertexts[0], m.poly_words,
                                                                  second=True)[HEADER_SIZE:], mode)
        with pytest.raises(CiphertextRejected, match="zero second part"):
            score_bytes(service, m.key_id, m.bundle, *m.request([blob]))


def test_batch_column_with_a_zero_second_part_is_422(service, material):
    m = material
    if m.batch is None:
        pytest.skip("this service offers no batch path")
    columns = list(m.batch.columns)
    columns[0] = fuzz.with_zero_parts(m.batch.full_column, m.poly_words, second=True)
    with pytest.raises(CiphertextRejected, match="zero second part"):
        score_bytes(service, m.key_id, m.bundle, *m.request(columns, records=m.batch.records))


@pytest.mark.parametrize("name", ["deep-list", "huge-int", "transparent"])
def test_the_same_inputs_over_http_are_4xx_not_500(http_app, material, name):
    m = material
    upload_own(http_app, m)
    if name == "transparent":
        body, content_type = m.request([fuzz.with_zero_parts(m.full_ciphertexts[0], m.poly_words, second=True)])
    else:
        body, content_type = {"deep-list": DEEP_LIST, "huge-int": HUGE_INTEGER}[name], "application/json"
    response = post_score(http_app, m.key_id, body, content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    assert set(response.json()) == {"error", "message"}


def test_struct_layout_matches_a_real_ciphertext(material):
    """The field table the fuzzer swaps from agrees with a real blob (guards against layout drift)."""
    m = material
    fields, data = fuzz.ciphertext_fields(m.poly_words, seeded=True)
    for blob, scale in ((m.ciphertexts[0], m.input_scale), (m.public_key_blob(), 1.0)):
        assert np.frombuffer(blob, "<u8", 1, fields["degree"][0])[0] == m.degree
        assert np.frombuffer(blob, "<f8", 1, fields["scale"][0])[0] == scale
        assert np.frombuffer(blob, "<u8", 1, fields["coeff_count"][0])[0] == m.poly_words
        assert blob[fields["parms_id"][0]:fields["parms_id"][0] + 32] == m.parms_id
        assert blob[fields["prng_type"][0]] in (1, 2) and len(blob) == fields["seed"][0] + 64
        assert data + 8 * m.poly_words + 81 == len(blob)
    assert claiming_fields(m.seal_version, m.parms_id, m.degree, 1, parts=2, scale=1.0) == (
        m.full_public_key[HEADER_SIZE:data])


@pytest.mark.parametrize("second_part", ["zero", "one"])
def test_a_public_key_whose_random_part_is_chosen_is_refused(service, material, second_part):
    """Found by fuzzing the old key format: a full-form public key with an all-zero (or all-one)
    second part was accepted, and re-randomization then added nothing, so a query whose second
    part is the constant 1 read back every weight. Only the seeded form is accepted now: the
    service expands the random part from the seed, so the client cannot choose it."""
    m = material
    key = bytearray(m.full_public_key)
    _, data = fuzz.ciphertext_fields(m.poly_words, seeded=False)
    key[data + 8 * m.poly_words:] = (b"\x00" * 8 if second_part == "zero" else (1).to_bytes(8, "little")) * m.poly_words
    crafted = key_bundle(m.bundle_head(), [(b"PKEY", bytes(key))])
    with pytest.raises(KeysRejected, match="must be in seeded form"):
        service.check_upload(key_id_of(crafted), crafted)
    with pytest.raises(KeysRejected, match="must be in seeded form"):
        service.score(key_id_of(crafted), crafted, ScoreRequest(m.ciphertexts, m.model_hash))


# -- (d) thousands of cases against the core, in a child process with limits (started with the module) --


def test_thousands_of_hostile_inputs_to_the_core(core_run):
    report = core_run.result()
    print("\n" + fuzz.format_report(report))
    categories = report["categories"]
    assert report["cases"] == CORE_CASES and len(categories) >= 30 and set(NEW_FAMILIES) <= set(categories)
    assert report["failure_count"] == 0, explain(report)
    assert all(status.isdigit() and int(status) < 500 for status in report["statuses"])
    assert categories["request.valid"]["statuses"] == {"200": categories["request.valid"]["cases"]}
    assert set(categories["request.version_1"]["statuses"]) == {"400"}
    assert {"200", "422"} <= set(categories["keys.crafted"]["statuses"])  # some keys pass, some are refused
    assert {"200", "400"} <= set(categories["batch.records"]["statuses"])
    assert "500" not in categories["keys.delete"]["statuses"] and "403" in categories["keys.delete"]["statuses"]
    assert report["memory"]["peak_growth_mb"] < MAX_GROWTH_MB, report["memory"]
    assert report["slowest_rejection"]["ms"] < MAX_REJECTION_MS, report["slowest_rejection"]
