"""Hostile input: thousands of mutated requests and key bundles against the core, hundreds over HTTP.

The inputs come from ``bench/fuzz.py`` (mutations of a real request and a real bundle). The
core run happens in a child process with an address-space limit and deadlines, so a crash,
a hang or a balloon fails the test with the case that caused it instead of taking pytest
down. ``python -m bench.fuzz`` prints the same figures.
"""

from __future__ import annotations

import struct
import time
from urllib.parse import quote

import numpy as np
import pytest
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

import hosts.functions
from bench import fuzz
from client import ScoringClient
from client.keys import SecretKeys
from scoring import protocol
from scoring.ckks import HEADER_SIZE, runtime
from scoring.errors import BadRequest, CiphertextRejected, KeysRejected, ScoringError
from scoring.keys import KEY_ID_PATTERN, PREAMBLE, SECTION, key_id_of

CORE_CASES = 4000
HTTP_CASES = 300
# Safety bounds, with margin over what was measured (bench/fuzz.py reports the figures):
# about 60 MB of growth over the whole run (cached bundles, a batch's columns) and at most
# about 0.1 s for the slowest rejection (a batch whose last column is bad) on 2 busy cores.
MAX_GROWTH_MB = 300
MAX_REJECTION_MS = 500
BOMB_MAX_MS, BOMB_MAX_MB = 100, 20
CONTAINER = "httpkeys"  # the http_app fixture's keys container


@pytest.fixture(scope="module")
def material(service):
    """Valid inputs from a fresh key of our own, and that key."""
    keys = SecretKeys.generate()
    return fuzz.build_material(service, keys, fuzz.default_record(service, 0)), keys


@pytest.fixture(scope="module")
def fuzzer(material):
    fuzzer = fuzz.Fuzzer(material[0], seed=1)
    fuzzer.prepare()
    return fuzzer


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


def url_key(key_id: str) -> str:
    """A key id as one URL path segment, every character but ASCII letters and digits escaped."""
    return "".join(c if c.isascii() and c.isalnum() else quote(c, safe="").replace(".", "%2E") for c in key_id)


def zero_second_part(blob: bytes) -> bytes:
    """A full (two-part) ciphertext blob with its second part zero: a 'transparent' ciphertext."""
    _, data = fuzz.ciphertext_fields(len(runtime().moduli) * runtime().degree, seeded=False)
    n = 8 * len(runtime().moduli) * runtime().degree
    out = bytearray(blob)
    out[data + n:data + 2 * n] = bytes(n)
    return bytes(out)


def explain(report: dict) -> str:
    kinds = "\n".join(f"  {count} x {kind}" for kind, count in report["failure_kinds"].items())
    examples = "\n".join(f"  #{f['index']} {f['category']} ({f['label']}): {f['failure'][:600]}"
                         for f in report["failures"][:8])
    return f"{report['failure_count']} failure(s) in {report['cases']} cases:\n{kinds}\nexamples:\n{examples}"


# -- (a) thousands of cases against the core, in a child process with limits ------------------


def test_thousands_of_hostile_inputs_to_the_core(digits_model_path):
    report = fuzz.run_isolated(CORE_CASES, seed=0, model=digits_model_path, timeout=300, case_timeout=10,
                               mem_limit_mb=1024)
    print("\n" + fuzz.format_report(report))
    assert report["cases"] == CORE_CASES and len(report["categories"]) >= 20
    assert report["failure_count"] == 0, explain(report)
    assert all(status.isdigit() and int(status) < 500 for status in report["statuses"])
    assert report["categories"]["request.valid"]["statuses"] == {"200": report["categories"]["request.valid"]["cases"]}
    assert report["memory"]["peak_growth_mb"] < MAX_GROWTH_MB, report["memory"]
    assert report["slowest_rejection"]["ms"] < MAX_REJECTION_MS, report["slowest_rejection"]


@pytest.mark.parametrize("fault,message", [
    ("segv", "killed by SIGSEGV"),
    ("hang", "exceeded the per-case deadline"),
    ("balloon", "ran out of its address-space limit"),
])
def test_the_harness_reports_a_crash_a_hang_and_a_balloon(fault, message):
    with pytest.raises(fuzz.FuzzFailure, match=message) as caught:
        fuzz.run_isolated(selftest=fault, case_timeout=2, mem_limit_mb=256, timeout=60)
    assert f"selftest.{fault}" in str(caught.value)  # names the case it was running


def test_cases_are_deterministic(material):
    first = fuzz.Fuzzer(material[0], seed=7)
    second = fuzz.Fuzzer(material[0], seed=7)
    for a, b in zip(first.cases(200), second.cases(200)):
        assert (a.category, a.label, a.body, a.content_type, a.key_id, a.expect) == (
            b.category, b.label, b.body, b.content_type, b.key_id, b.expect)


# -- (b) hundreds of cases over HTTP: Functions app, local host, Azurite ------------------------


def test_hundreds_of_hostile_requests_over_http(http_app, azurite, service, material, fuzzer, digits,
                                                digits_estimator, behind_the_api):
    m, keys = material
    assert requests.put(f"{http_app.url}/api/keys/{m.key_id}", data=m.bundle, timeout=30).status_code in (200, 201)
    encodings = fuzz.encodings(service)
    container = container_client(azurite)
    before = {blob.name for blob in container.list_blobs()}  # other modules' clients share the container
    written, accepted, rejected, failures = behind_the_api, set(), set(), []
    statuses: dict[int, int] = {}
    slowest = (0.0, "")
    for case in fuzzer.cases(HTTP_CASES):
        if case.target == "upload":
            key_id = key_id_of(case.body) if case.key_id is None else case.key_id
        else:
            key_id = m.key_id if case.key_id is None else case.key_id
        if not key_id:
            continue  # an empty path segment matches no route: the host's 404, before the app
        valid_id = bool(KEY_ID_PATTERN.fullmatch(key_id))
        if case.target == "score" and case.bundle is not None and valid_id and key_id != m.key_id:
            container.upload_blob(key_id, case.bundle, overwrite=True)  # stored behind the API's back
            written.add(key_id)
        headers = {} if case.content_type is None else {"Content-Type": case.content_type}
        method, route = ("PUT", "keys") if case.target == "upload" else ("POST", "score")
        started = time.perf_counter()
        response = requests.request(method, f"{http_app.url}/api/{route}/{url_key(key_id)}", data=case.body,
                                    headers=headers, timeout=120)
        ms = (time.perf_counter() - started) * 1e3
        status = response.status_code
        statuses[status] = statuses.get(status, 0) + 1
        where = f"#{case.index} {case.category} ({case.label}): {status}"
        message = ""
        if status >= 400:
            slowest = max(slowest, (ms, where))
            if not response.headers.get("content-type", "").startswith("application/json"):
                failures.append(f"{where} without a JSON body: {response.text[:200]!r}")
                continue
            body = response.json()
            if set(body) != {"error", "message"} or not all(isinstance(v, str) and v for v in body.values()):
                failures.append(f"{where} with an error body {body!r}")
            message = str(body.get("message", ""))
        accepted_upload = case.target == "upload" and status in (200, 201)  # 201: stored, 200: already there
        why = case.judge(200 if accepted_upload else status, message)
        if why is None and status == 200 and case.target == "score":
            try:
                why = fuzz.check_success(m, keys, encodings, case, response.content,
                                         response.headers.get("content-type"))
            except Exception as exc:  # noqa: BLE001 - an accepted answer that does not decrypt
                why = f"accepted, but the response does not decrypt: {type(exc).__name__}: {exc}"
        if why:
            failures.append(f"{where}: {why}")
        if case.target == "upload" and valid_id:
            (accepted if status in (200, 201) else rejected).add(key_id)
    print(f"\nHTTP: {sum(statuses.values())} cases, statuses {dict(sorted(statuses.items()))}, "
          f"slowest rejection {slowest[0]:.1f} ms ({slowest[1]})")
    assert not failures, f"{len(failures)} of {sum(statuses.values())} cases failed:\n" + "\n".join(failures[:25])
    assert not [s for s in statuses if s >= 500]

    names = {blob.name for blob in container.list_blobs()} - before
    refused_but_stored = (names & rejected) - accepted - written
    assert not refused_but_stored, f"refused bundles were stored: {sorted(refused_but_stored)[:5]}"
    assert names <= {m.key_id} | accepted | written, sorted(names - ({m.key_id} | accepted | written))[:5]
    cache = hosts.functions.service().bundles
    assert not [k for k in rejected - accepted - written if cache.contains(k)], "a refused bundle was cached"

    # the worker still serves correct answers
    client = ScoringClient(http_app.url, timeout=60)
    rows = digits[0][1500:1505]
    np.testing.assert_array_equal(client.predict(rows), digits_estimator.predict(rows))
    np.testing.assert_allclose(client.decision_function(rows), digits_estimator.decision_function(rows), atol=1e-5)
    client.delete_keys()


# -- (c) the named cases --------------------------------------------------------------------------


def bombs(m: fuzz.Material) -> dict[str, bytes]:
    """Ciphertext-shaped decompression bombs: 1 GB of zeros in about 32 KB (zstd), 64 MB in 64 KB (zlib)."""
    v = m.seal_version
    claims = fuzz.claiming_fields(m, parts=1 << 17, scale=m.input_scale)
    return {
        "zstd, 1 GB of zeros behind fields claiming 2^17 parts": fuzz.bomb(v, claims, 1 << 30, "zstd"),
        "zstd, 1 GB of zeros": fuzz.bomb(v, b"", 1 << 30, "zstd"),
        "zstd, 256 MB of zeros with a 128 MB window": fuzz.bomb(v, b"", 256 << 20, "zstd", window_log=27),
        "zlib, 64 MB of zeros behind fields claiming 2^17 parts": fuzz.bomb(v, claims, 64 << 20, "zlib"),
    }


def bundle_bombs(m: fuzz.Material) -> dict[str, bytes]:
    v = m.seal_version
    head = m.bundle[:PREAMBLE.size + 8 * len(m.moduli)]
    claims = fuzz.claiming_fields(m, parts=1 << 17, scale=1.0)
    blobs = {"zstd, 1 GB of zeros behind public-key fields claiming 2^17 parts": fuzz.bomb(v, claims, 1 << 30, "zstd"),
             "zlib, 256 MB of zeros behind public-key fields": fuzz.bomb(
                 v, fuzz.claiming_fields(m, parts=2, scale=1.0), 256 << 20, "zlib")}
    return {name: head + SECTION.pack(b"PKEY", len(blob)) + blob for name, blob in blobs.items()}


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
    m, _ = material
    figures = []
    for name, blob in bombs(m).items():
        body, content_type = m.request([blob])
        raised, ms, mb = measured(lambda: service.score(m.key_id, m.bundle, body, content_type))
        figures.append(f"{name}: {len(blob)} bytes, {ms:.1f} ms, +{mb:.1f} MB")
        assert isinstance(raised, CiphertextRejected), (name, raised)
        assert ms < BOMB_MAX_MS and mb < BOMB_MAX_MB, figures[-1]
    for name, bundle in bundle_bombs(m).items():
        raised, ms, mb = measured(lambda: service.check_upload(key_id_of(bundle), bundle))
        figures.append(f"bundle {name}: {len(bundle)} bytes, {ms:.1f} ms, +{mb:.1f} MB")
        assert isinstance(raised, KeysRejected), (name, raised)
        assert ms < BOMB_MAX_MS and mb < BOMB_MAX_MB, figures[-1]
        raised, ms, mb = measured(lambda: service.score(key_id_of(bundle), bundle, *m.request()))
        assert isinstance(raised, KeysRejected) and not service.bundles.contains(key_id_of(bundle))
        assert ms < BOMB_MAX_MS and mb < BOMB_MAX_MB, (name, ms, mb)
    print("\n" + "\n".join(figures))


def test_decompression_bombs_over_http_are_422_and_not_stored(http_app, azurite, material):
    m, _ = material
    assert requests.put(f"{http_app.url}/api/keys/{m.key_id}", data=m.bundle, timeout=30).status_code in (200, 201)
    for name, blob in bombs(m).items():
        body, content_type = m.request([blob])
        response = requests.post(f"{http_app.url}/api/score/{m.key_id}", data=body,
                                 headers={"Content-Type": content_type}, timeout=30)
        assert response.status_code == 422 and response.json()["error"] == "ciphertext_rejected", name
    for name, bundle in bundle_bombs(m).items():
        key_id = key_id_of(bundle)
        response = requests.put(f"{http_app.url}/api/keys/{key_id}", data=bundle, timeout=30)
        assert response.status_code == 422 and response.json()["error"] == "keys_rejected", name
        assert stored(azurite, key_id) is None and not hosts.functions.service().bundles.contains(key_id)


def secret_bundles(m: fuzz.Material) -> dict[str, bytes]:
    head = m.bundle[:PREAMBLE.size + 8 * len(m.moduli)]
    public = m.public_key_blob()

    def bundle(*sections):
        return head + b"".join(SECTION.pack(tag, len(payload)) + payload for tag, payload in sections)

    return {
        "a SKEY section after the public key": bundle((b"PKEY", public), (b"SKEY", m.secret_key)),
        "the secret key in the PKEY section, as SEAL saves it": bundle((b"PKEY", m.secret_key)),
        "the secret key in the PKEY section, uncompressed": bundle((b"PKEY", m.secret_key_raw)),
        "a SECK section before the public key": bundle((b"SECK", m.secret_key_raw), (b"PKEY", public)),
    }


def test_bundles_holding_a_secret_key_are_422_neither_stored_nor_cached(http_app, azurite, service, material):
    m, _ = material
    body, content_type = m.request()
    for name, bundle in secret_bundles(m).items():
        key_id = key_id_of(bundle)
        response = requests.put(f"{http_app.url}/api/keys/{key_id}", data=bundle, timeout=30)
        assert response.status_code == 422, name
        assert response.json()["error"] == "keys_rejected" and "secret key" in response.json()["message"], name
        assert stored(azurite, key_id) is None, name
        assert not hosts.functions.service().bundles.contains(key_id), name
        score = requests.post(f"{http_app.url}/api/score/{key_id}", data=body,
                              headers={"Content-Type": content_type}, timeout=30)
        assert score.status_code == 404, name  # nothing was stored under its id
        # written straight to storage (as upload_keys_to_blob could): still refused, never cached
        container_client(azurite).upload_blob(key_id, bundle, overwrite=True)
        try:
            score = requests.post(f"{http_app.url}/api/score/{key_id}", data=body,
                                  headers={"Content-Type": content_type}, timeout=30)
            assert score.status_code == 422 and "secret key" in score.json()["message"], name
            assert not hosts.functions.service().bundles.contains(key_id), name
        finally:
            container_client(azurite).delete_blob(key_id)
        # in-process: the same
        with pytest.raises(KeysRejected, match="secret key"):
            service.check_upload(key_id, bundle)
        with pytest.raises(KeysRejected, match="secret key"):
            service.score(key_id, bundle, body, content_type)
        assert not service.bundles.contains(key_id)


@pytest.mark.parametrize("key_id", ["../" + "a" * 61, "../../../../etc/passwd", "..", "A" * 64,
                                    "ABCDEF" + "0" * 58, "a" * 63 + "/", "..%2F" + "a" * 59])
def test_key_ids_with_dot_dot_or_uppercase_are_400(http_app, service, material, key_id):
    m, _ = material
    key_id = m.key_id.upper() if key_id == "A" * 64 else key_id
    body, content_type = m.request()
    for method, route, data in (("POST", "score", body), ("PUT", "keys", m.bundle), ("DELETE", "keys", b"")):
        response = requests.request(method, f"{http_app.url}/api/{route}/{url_key(key_id)}", data=data,
                                    headers={"Content-Type": content_type}, timeout=30)
        assert response.status_code == 400, (method, route, response.text[:200])
        assert response.json() == {"error": "bad_request", "message": (
            "key id must be 64 lowercase hex characters (the SHA-256 of the key bundle)")}
    for call in (lambda: service.score(key_id, m.bundle, body, content_type),
                 lambda: service.check_upload(key_id, m.bundle), lambda: service.forget(key_id)):
        with pytest.raises(BadRequest, match="64 lowercase hex"):
            call()


# -- bugs the fuzzing found: minimal failing cases (see the report for the fixes) ---------------------


DEEP_LIST = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
HUGE_INTEGER = b'{"version":1' + b"0" * 5000 + b',"ciphertexts":["AAAA"]}'


@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT, HUGE_INTEGER], ids=["deep-list", "deep-object", "huge-int"])
def test_json_the_parser_cannot_take_is_400(service, keys, body):
    """json.loads raises RecursionError (deep nesting) or a plain ValueError (an integer over
    sys.get_int_max_str_digits()); protocol._decode_json lets both escape: a 500."""
    with pytest.raises(BadRequest):
        protocol.decode(body, "application/json", response=False)
    with pytest.raises(ScoringError) as caught:
        service.score(keys.key_id, keys.public_bundle(), body, "application/json")
    assert caught.value.status == 400


def test_ciphertext_with_a_zero_second_part_is_422(service, material):
    """It loads, but SEAL's multiply_plain then throws 'result ciphertext is transparent': a 500."""
    m, _ = material
    for mode in ("none", "zstd"):
        blob = fuzz.reencode(m.seal_version, zero_second_part(m.full_ciphertexts[0])[HEADER_SIZE:], mode)
        with pytest.raises(CiphertextRejected):
            service.score(m.key_id, m.bundle, *m.request([blob]))


def test_batch_column_with_a_zero_second_part_is_422(service, material):
    m, _ = material
    if not m.bulk_ciphertexts:
        pytest.skip("this service offers no batch path")
    columns = list(m.bulk_ciphertexts)
    columns[0] = zero_second_part(m.bulk_full_column)
    with pytest.raises(CiphertextRejected):
        service.score(m.key_id, m.bundle, *m.request(columns, records=m.bulk_records))


@pytest.mark.parametrize("name", ["deep-list", "huge-int", "transparent"])
def test_the_same_inputs_over_http_are_4xx_not_500(http_app, material, name):
    m, _ = material
    assert requests.put(f"{http_app.url}/api/keys/{m.key_id}", data=m.bundle, timeout=30).status_code in (200, 201)
    if name == "transparent":
        body, content_type = m.request([zero_second_part(m.full_ciphertexts[0])])
    else:
        body, content_type = {"deep-list": DEEP_LIST, "huge-int": HUGE_INTEGER}[name], "application/json"
    response = requests.post(f"{http_app.url}/api/score/{m.key_id}", data=body,
                             headers={"Content-Type": content_type}, timeout=30)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    assert set(response.json()) == {"error", "message"}


def test_struct_layout_matches_a_real_ciphertext(material):
    """The field table the fuzzer swaps from agrees with a real blob (guards against layout drift)."""
    m, _ = material
    fields, data = fuzz.ciphertext_fields(m.poly_words, seeded=True)
    blob = m.ciphertexts[0]
    assert struct.unpack_from("<Q", blob, fields["degree"][0])[0] == m.degree
    assert struct.unpack_from("<d", blob, fields["scale"][0])[0] == m.input_scale
    assert struct.unpack_from("<Q", blob, fields["coeff_count"][0])[0] == m.poly_words
    assert blob[fields["parms_id"][0]:fields["parms_id"][0] + 32] == m.parms_id
    assert blob[fields["prng_type"][0]] in (1, 2) and len(blob) == fields["seed"][0] + 64
    assert data + 8 * m.poly_words + 81 == len(blob)


@pytest.mark.parametrize("second_part", ["zero", "one"])
def test_a_crafted_public_key_does_not_reveal_the_weights(service, material, second_part):
    """Found by fuzzing: an all-zero public key part is accepted (it has the right shape and
    every coefficient is below q). Re-randomization adds ``pk1 * u + e1`` to the result's
    second part; with ``pk1`` zero or one (chosen by the client) that term is zero or small,
    so a query whose second part is the constant 1 gets back ``P + small``: every weight.
    The fix must refuse such a key (or make ``pk1`` something the client cannot choose, e.g.
    accept only a seeded public key and expand the seed on the server)."""
    m, _ = material
    kernel = service.kernel
    rt, q, n = kernel.rt, int(kernel.rt.moduli[0]), kernel.rt.degree
    _, data = fuzz.ciphertext_fields(m.poly_words, seeded=False)
    bundle = bytearray(m.bundle)
    start = PREAMBLE.size + 8 * len(m.moduli) + SECTION.size + data + 8 * m.poly_words
    bundle[start:] = (b"\x00" * 8 if second_part == "zero" else struct.pack("<Q", 1)) * m.poly_words
    bundle = bytes(bundle)
    polys = np.zeros((2, 1, n), dtype=np.uint64)
    polys[1] = 1  # the query's second part: the constant polynomial 1 (all ones in NTT form)
    query = rt.ciphertext_blob(polys, ntt=True, scale=kernel.input_scale)
    try:
        out, out_type = service.score(key_id_of(bundle), bundle, *m.request([query]))
    except KeysRejected:
        return  # refused: nothing to read
    result = protocol.decode(out, out_type, response=True).ciphertexts[0]
    second = rt.ntt(rt.ciphertext_polys(result[HEADER_SIZE:], 2)[1], inverse=True)[0].astype(np.int64)
    signed = np.where(second > q // 2, second - q, second).astype(np.float64) / kernel.weight_scale
    width = kernel.layout.chunk_width
    stolen = np.vstack([signed[c * width:(c + 1) * width][::-1] for c in range(kernel.model.n_outputs)])
    weights = kernel.model.coef * kernel.model.input_bounds
    assert np.abs(stolen - weights).max() > 1.0, "the response's second part is the weight polynomial"
