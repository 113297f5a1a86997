"""devhost against a real Azurite, over HTTP to 127.0.0.1: routes, keys, bindings, limits,
worker processes and their lifecycle, load-time refusals.

The sample app is tests/devhost_app. Hosts are module-scoped where their settings allow it, so
the module starts a handful of worker processes in all.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from devhost.app import AppLoadError
from devhost.azurite import ACCOUNT_KEY, Azurite, ensure_installed
from devhost.bindings import BindingError, resolve_connection
from devhost.host import LocalFunctionsHost
from devhost.processes import free_port
from helpers import alive

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = Path(__file__).resolve().parent / "devhost_app"
CONTAINER = "samples"
MASTER_KEY = "master-KEY-0d6f3a"
HOST_KEY = "host-KEY-9b1c7e"
HELLO_KEY = "hello-KEY-4e2a8f"
KEYS = {"master": MASTER_KEY, "host": {"default": HOST_KEY}, "functions": {"hello": {"default": HELLO_KEY}}}


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    ensure_installed(ROOT)
    # An explicit location keeps the data across stop()/start() for the storage-down test.
    with Azurite(location=tmp_path_factory.mktemp("azurite")) as service:
        yield service


@pytest.fixture(scope="module")
def settings(azurite):
    saved = {k: os.environ.get(k) for k in ("SAMPLE_STORAGE", "SAMPLE_CONTAINER")}
    os.environ["SAMPLE_STORAGE"] = azurite.connection_string
    os.environ["SAMPLE_CONTAINER"] = CONTAINER
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def host(settings):
    with LocalFunctionsHost(APP_DIR, port=0) as running:
        yield running


@pytest.fixture(scope="module")
def small_host(settings):
    with LocalFunctionsHost(APP_DIR, port=0, max_body_bytes=1024) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_host(settings):
    with LocalFunctionsHost(APP_DIR, port=0, keys=KEYS) as running:
        yield running


@pytest.fixture(scope="module")
def pair(settings):
    """Two worker processes of one sync thread each."""
    with LocalFunctionsHost(APP_DIR, port=0, workers=2, threads=1) as running:
        yield running


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False  # never route 127.0.0.1 through a proxy
    yield session
    session.close()


@pytest.fixture
def blobs(azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def read_blob(blobs: BlobServiceClient, container: str, name: str) -> bytes:
    return blobs.get_blob_client(container, name).download_blob().readall()


def wait_dead(pids, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# -- routing ---------------------------------------------------------------------------------
def test_route_params_query_and_headers_reach_the_function(host, http):
    r = http.get(f"{host.url}/api/echo/b%C3%B6b?x=1&flag=&x=2&Empty", headers={"X-Sample": "yes"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    # empty query values are dropped, as the host drops them for the Python worker
    assert r.json() == {"route": {"name": "böb"}, "query": {"x": "1,2"}, "method": "GET", "header": "yes"}


def test_literal_segments_match_case_insensitively_with_optional_trailing_slash(host, http):
    assert http.get(f"{host.url}/API/Echo/abc/").json()["route"] == {"name": "abc"}


def test_unknown_paths_are_404_with_an_empty_body(host, http):
    for path in ("/api/nope", "/api/echo", "/api/echo/a/b", "/echo/a", "/api/blobs/"):
        r = http.get(host.url + path)
        assert (r.status_code, r.content) == (404, b""), path


def test_known_route_with_another_method_is_404_like_the_host(host, http):
    r = http.delete(f"{host.url}/api/blobs/x")
    assert (r.status_code, r.content) == (404, b"")
    assert "Allow" not in r.headers
    assert http.post(f"{host.url}/api/echo/x").status_code == 404


def test_route_constraint_async_function_and_context(host, http):
    r = http.get(f"{host.url}/api/items/42")
    assert (r.status_code, r.text) == (200, "item 42 by item")
    assert http.get(f"{host.url}/api/items/abc").status_code == 404


# -- function keys ---------------------------------------------------------------------------
def test_keys_are_off_by_default(host, http):
    assert http.get(f"{host.url}/api/hello").text == "hello"
    assert http.get(f"{host.url}/api/admin").text == "admin"


def test_missing_or_wrong_key_is_401_with_an_empty_body(keyed_host, http):
    for headers in ({}, {"x-functions-key": "wrong"}, {"x-functions-key": ""}):
        r = http.get(f"{keyed_host.url}/api/hello", headers=headers)
        assert (r.status_code, r.content) == (401, b""), headers
    assert http.get(f"{keyed_host.url}/api/hello?code=wrong").status_code == 401


def test_host_key_is_valid_on_every_function_level_function(keyed_host, http):
    for path, text in (("hello", "hello"), ("other", "other")):
        assert http.get(f"{keyed_host.url}/api/{path}", headers={"x-functions-key": HOST_KEY}).text == text
        assert http.get(f"{keyed_host.url}/api/{path}?code={HOST_KEY}").text == text


def test_function_key_is_valid_only_on_its_own_function(keyed_host, http):
    assert http.get(f"{keyed_host.url}/api/hello", headers={"x-functions-key": HELLO_KEY}).text == "hello"
    assert http.get(f"{keyed_host.url}/api/hello?code={HELLO_KEY}").text == "hello"
    assert http.get(f"{keyed_host.url}/api/other", headers={"x-functions-key": HELLO_KEY}).status_code == 401
    assert http.get(f"{keyed_host.url}/api/other?code={HELLO_KEY}").status_code == 401


def test_admin_functions_take_only_the_master_key(keyed_host, http):
    assert http.get(f"{keyed_host.url}/api/admin", headers={"x-functions-key": MASTER_KEY}).text == "admin"
    for key in (HOST_KEY, HELLO_KEY):
        assert http.get(f"{keyed_host.url}/api/admin", headers={"x-functions-key": key}).status_code == 401
    for path in ("hello", "other"):  # the master key is valid everywhere
        assert http.get(f"{keyed_host.url}/api/{path}?code={MASTER_KEY}").status_code == 200


def test_header_key_wins_over_the_code_parameter(keyed_host, http):
    r = http.get(f"{keyed_host.url}/api/hello?code={HOST_KEY}", headers={"x-functions-key": "wrong"})
    assert r.status_code == 401


def test_anonymous_functions_are_open_even_with_a_wrong_key(keyed_host, http, caplog):
    with caplog.at_level(logging.INFO, logger="devhost"):
        assert http.get(f"{keyed_host.url}/api/echo/a").status_code == 200
        assert http.get(f"{keyed_host.url}/api/echo/a?code=wrong", headers={"x-functions-key": "x"}).status_code == 200
        http.get(f"{keyed_host.url}/api/hello?code={HELLO_KEY}")
        time.sleep(0.1)  # the access line follows the response
    assert HELLO_KEY not in caplog.text and "code=" not in caplog.text  # neither keys nor queries are logged
    assert "GET /api/hello 200" in caplog.text


# -- blob bindings ---------------------------------------------------------------------------
def test_blob_round_trip_through_output_and_input_bindings(host, http, blobs):
    payload = bytes(range(256)) * 10
    first = http.put(f"{host.url}/api/blobs/round-trip.bin", data=payload)
    assert first.status_code == 201
    assert first.json() == {"existed": False, "type": "NoneType", "previous_size": None}
    assert read_blob(blobs, CONTAINER, "round-trip.bin") == payload  # really in Azurite

    second = http.put(f"{host.url}/api/blobs/round-trip.bin", data=b"second")
    assert second.status_code == 200
    # the input binding saw the first blob, as an InputStream (the annotation)
    assert second.json() == {"existed": True, "type": "InputStream", "previous_size": len(payload)}
    assert read_blob(blobs, CONTAINER, "round-trip.bin") == b"second"

    got = http.get(f"{host.url}/api/blobs/round-trip.bin")
    assert (got.status_code, got.content) == (200, b"second")
    assert got.headers["X-Blob-Type"] == "bytes"  # dataType BINARY + bytes annotation
    assert http.get(f"{host.url}/api/text/round-trip.bin").text == "str:second"  # no dataType: a string


def test_binary_blob_without_data_type_arrives_as_text_as_on_azure(host, http, blobs):
    """Without dataType the host binds blob inputs as a string (UTF-8, invalid bytes replaced):
    azure-functions-python-worker#490 and #720."""
    blobs.get_blob_client(CONTAINER, "binary.bin").upload_blob(b"\x80\x81ok", overwrite=True)
    assert http.get(f"{host.url}/api/text/binary.bin").text == "str:\ufffd\ufffdok"


def test_sdk_type_binding_is_built_in_the_worker(host, http, blobs):
    blobs.get_blob_client(CONTAINER, "sdk.bin").upload_blob(b"12345", overwrite=True)
    assert http.get(f"{host.url}/api/sdk/sdk.bin").json() == {"type": "BlobClient", "blob": "sdk.bin", "size": 5}
    assert http.get(f"{host.url}/api/sdk/absent").json()["size"] is None


def test_input_binding_reads_a_blob_written_directly(host, http, blobs):
    blobs.get_blob_client(CONTAINER, "direct.txt").upload_blob(b"hello", overwrite=True)
    assert http.get(f"{host.url}/api/blobs/direct.txt").content == b"hello"


def test_missing_blob_is_passed_as_none(host, http):
    r = http.get(f"{host.url}/api/blobs/does-not-exist")
    assert (r.status_code, r.text) == (404, "no such blob")  # the function itself answered
    assert http.put(f"{host.url}/api/blobs/fresh", data=b"1").json()["existed"] is False


def test_settings_in_paths_are_resolved_once_at_start(host, http, blobs, monkeypatch):
    monkeypatch.setenv("SAMPLE_CONTAINER", "other-container")  # after start: no effect
    assert http.put(f"{host.url}/api/blobs/pinned", data=b"here").status_code == 201
    assert read_blob(blobs, CONTAINER, "pinned") == b"here"


def test_unset_setting_in_a_binding_fails_the_start(settings, monkeypatch):
    monkeypatch.delenv("SAMPLE_CONTAINER")
    with pytest.raises(AppLoadError) as caught:
        LocalFunctionsHost(APP_DIR, port=0).start()
    message = str(caught.value)
    for name in ("put_blob", "get_blob", "get_text", "sdk_blob"):
        assert f"The '{name}' function is in error: '%SAMPLE_CONTAINER%' does not resolve to a value." in message


def test_connection_names_follow_the_blob_extension_rules(azurite, settings, http, blobs, monkeypatch):
    """AzureWebJobs<NAME> is honoured by the host side (the front reads the blob), not by the
    SDK-type side (the extension in the worker looks up <NAME> only): a 500 there."""
    monkeypatch.delenv("SAMPLE_STORAGE")
    monkeypatch.setenv("AzureWebJobsSAMPLE_STORAGE", azurite.connection_string)
    blobs.get_blob_client(CONTAINER, "prefixed").upload_blob(b"via prefix", overwrite=True)
    with LocalFunctionsHost(APP_DIR, port=0) as prefixed:
        assert http.get(f"{prefixed.url}/api/blobs/prefixed").content == b"via prefix"
        r = http.get(f"{prefixed.url}/api/sdk/prefixed")
        assert (r.status_code, r.content) == (500, b"")


def test_identity_based_connections_as_the_extension_reads_them():
    uri = "https://acct.blob.core.windows.net"
    user = resolve_connection("S", {"S__serviceUri": uri, "S__credential": "managedidentity", "S__clientId": "id"})
    assert (user.service_uri, user.managed_identity, user.client_id) == (uri, True, "id")
    both = resolve_connection("S", {"S__serviceUri": "https://other", "S__blobServiceUri": uri})
    assert (both.service_uri, both.managed_identity) == (uri, False)  # the multi-service form wins
    assert resolve_connection("S", {"S": "UseDevelopmentStorage=true", "S__serviceUri": uri}).connection_string
    assert resolve_connection("", {"AzureWebJobsStorage__accountName": "acct"}).service_uri == uri
    for environ in ({"S__accountName": "acct"}, {}, {"S__credential": "managedidentity"}):
        with pytest.raises(BindingError):
            resolve_connection("S", environ)


# -- limits and failures ---------------------------------------------------------------------
def test_body_over_the_cap_is_413_and_the_function_never_runs(small_host, http, blobs):
    r = http.put(f"{small_host.url}/api/blobs/too-big", data=b"x" * 64 * 1024)
    assert r.status_code == 413
    chunked = http.put(f"{small_host.url}/api/blobs/too-big", data=iter([b"y" * 700, b"y" * 700]))
    assert chunked.status_code == 413
    assert not blobs.get_blob_client(CONTAINER, "too-big").exists()
    at_cap = http.put(f"{small_host.url}/api/blobs/at-cap", data=b"z" * 1024)
    assert at_cap.status_code == 201
    assert read_blob(blobs, CONTAINER, "at-cap") == b"z" * 1024


def test_chunked_body_reaches_the_function_empty_as_on_the_host(host, http, blobs):
    r = http.post(f"{host.url}/api/payload/3", data=iter([b"ab", b"", b"cd" * 100]))
    assert r.status_code == 200
    assert (r.headers["X-Body-Length"], r.headers["X-Transfer-Encoding"]) == ("0", "chunked")
    sized = http.post(f"{host.url}/api/payload/3", data=b"ab" + b"cd" * 100)
    assert sized.headers["X-Body-Length"] == "202"
    assert http.put(f"{host.url}/api/blobs/chunked", data=iter([b"ab", b"cd"])).status_code == 201
    assert read_blob(blobs, CONTAINER, "chunked") == b""


def test_exception_is_500_with_an_empty_body_and_logged_on_the_host(host, http, caplog):
    with caplog.at_level(logging.INFO, logger="devhost"):
        r = http.get(f"{host.url}/api/boom?code=hunter2")
        # the access line is written by the server thread just after the response is sent
        deadline = time.monotonic() + 5
        while "GET /api/boom 500" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert (r.status_code, r.content) == (500, b"")
    assert "secret-internal-detail" in caplog.text and "Traceback" in caplog.text
    assert "Executed 'Functions.boom' (Failed)" in caplog.text
    assert "GET /api/boom 500" in caplog.text  # the access line
    assert "hunter2" not in caplog.text  # query strings are never logged


def test_storage_down_is_500_then_recovers(host, http, azurite, caplog):
    assert http.put(f"{host.url}/api/blobs/survivor", data=b"kept").status_code == 201
    azurite.stop()
    try:
        with caplog.at_level(logging.ERROR, logger="devhost"):
            down = http.get(f"{host.url}/api/blobs/survivor")
        assert (down.status_code, down.content) == (500, b"")
        assert "binding failed" in caplog.text
        assert ACCOUNT_KEY not in caplog.text
    finally:
        azurite.start()  # same port, same data folder
    up = http.get(f"{host.url}/api/blobs/survivor")
    assert (up.status_code, up.content) == (200, b"kept")


def test_unread_body_of_a_404_does_not_corrupt_the_next_request(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=5) as sock:
        sock.sendall(b"POST /api/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n"
                     b"GET /api/echo/smuggled HTTP/1.1")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 404") and reply.count(b"HTTP/1.1") == 1


# -- load-time refusals (the Python worker's checks) -----------------------------------------
BAD_APPS = {
    "output binding not annotated Out": (
        '@app.blob_output(arg_name="data", path="c/b", connection="C")\n'
        "def f(req: func.HttpRequest, data: bytes) -> func.HttpResponse: ...",
        'binding data is declared to have the "out" direction, but its annotation in Python is not '
        "a subclass of azure.functions.Out"),
    "input binding annotated Out": (
        '@app.blob_input(arg_name="data", path="c/b", connection="C")\n'
        "def f(req: func.HttpRequest, data: func.Out[bytes]) -> func.HttpResponse: ...",
        'binding data is declared to have the "in" direction in function.json, but its annotation '
        "is azure.functions.Out in Python"),
    "trigger annotation": (
        "def f(req: int) -> func.HttpResponse: ...",
        "'req' binding type \"httpTrigger\" and dataType \"None\" in function.json do not match the "
        "corresponding function parameter's Python type annotation \"int\""),
    "blob annotation": (
        '@app.blob_input(arg_name="data", path="c/b", connection="C")\n'
        "def f(req: func.HttpRequest, data: dict) -> func.HttpResponse: ...",
        "'data' binding type \"blob\" and dataType \"None\" in function.json do not match the "
        "corresponding function parameter's Python type annotation \"dict\""),
    "Optional annotation": (
        '@app.blob_input(arg_name="data", path="c/b", connection="C")\n'
        "def f(req: func.HttpRequest, data: typing.Optional[bytes]) -> func.HttpResponse: ...",
        # the worker's own check (with azurefunctions-extensions-base installed) fails with a bare
        # TypeError; devhost names the function and parameter
        "the annotation typing.Optional[bytes] of parameter data cannot be checked: TypeError: "
        "issubclass() arg 1 must be a class"),
    "return annotation": (
        "def f(req: func.HttpRequest) -> dict: ...",
        'Python return annotation "dict" does not match binding type "http"'),
    "context annotation": (
        "def f(req: func.HttpRequest, context: str) -> func.HttpResponse: ...",
        "the \"context\" parameter is expected to be of type azure.functions.Context, got <class 'str'>"),
    "binding without parameter": (
        '@app.blob_input(arg_name="data", path="c/b", connection="C")\n'
        "def f(req: func.HttpRequest) -> func.HttpResponse: ...",
        "the following parameters are declared in function.json but not in Python: {'data'}"),
}


@pytest.mark.parametrize("case", list(BAD_APPS), ids=list(BAD_APPS))
def test_the_worker_refuses_at_load_what_the_python_worker_refuses(case, tmp_path):
    code, message = BAD_APPS[case]
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    (tmp_path / "function_app.py").write_text(
        "import typing\nimport azure.functions as func\napp = func.FunctionApp()\n\n"
        f'@app.route(route="f")\n{code}\n')
    with pytest.raises(AppLoadError) as caught:
        LocalFunctionsHost(tmp_path, port=0, load_local_settings=False).start()
    assert f"cannot load the f function: {message}" in str(caught.value)


# -- worker processes ------------------------------------------------------------------------
def test_invocations_spread_over_two_worker_processes(pair, http):
    pids = {w["pid"] for w in pair.worker_stats()}
    assert len(pids) == 2 and os.getpid() not in pids
    before = [w["by_function"].get("where", 0) for w in pair.worker_stats()]
    seen = [http.get(f"{pair.url}/api/where/0").json() for _ in range(6)]
    assert {s["pid"] for s in seen} == pids
    assert all(s["thread"].startswith("invocation") for s in seen)  # the worker's sync pool
    after = [w["by_function"].get("where", 0) for w in pair.worker_stats()]
    assert [a - b for a, b in zip(after, before)] == [3, 3]  # round-robin, visible per worker
    assert all(w["threads"] == 1 for w in pair.worker_stats())  # PYTHON_THREADPOOL_THREAD_COUNT


def test_two_workers_run_two_invocations_at_once(pair, http):
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: requests.get(f"{pair.url}/api/where/600", timeout=10).json(), range(2)))
    assert time.monotonic() - started < 1.1  # not 1.2 s: one sync thread in each process
    assert len({r["pid"] for r in replies}) == 2


def test_front_to_worker_hop_is_small(host, http):
    """66 KB in, 131 KB out: the front->worker round trip minus the function's own time."""
    body = b"q" * 66_000
    for _ in range(20):
        http.post(f"{host.url}/api/payload/131072", data=body)
    worker = host.pool.workers[0]
    worker.hop_ns.clear()
    for _ in range(150):
        assert len(http.post(f"{host.url}/api/payload/131072", data=body).content) == 131072
    hop_ms = host.worker_stats()[0]["hop_ms_p50"]
    print(f"front->worker hop p50: {hop_ms:.3f} ms")
    assert hop_ms < 5  # a sanity bound (the benchmark's job is the figure): about 0.2-0.3 ms here


PLAIN_SCRIPT = """\
import json, urllib.request
from devhost import LocalFunctionsHost

host = LocalFunctionsHost({app!r}, port=0, workers=2, load_local_settings=False)
host.start()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
pids = {{json.load(opener.open(host.url + "/api/where/0"))["pid"] for _ in range(4)}}
stats = host.worker_stats()
host.stop()
print(json.dumps({{"pids": sorted(pids), "workers": sorted(w["pid"] for w in stats)}}))
"""


def test_a_plain_script_without_a_main_guard_starts_two_workers(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(PLAIN_SCRIPT.format(app=str(APP_DIR)))
    env = {**os.environ, "SAMPLE_CONTAINER": CONTAINER}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["pids"] == report["workers"] and len(report["workers"]) == 2
    assert wait_dead(report["workers"]) == []  # stop() stopped them


def test_workers_stop_with_the_host(settings):
    host = LocalFunctionsHost(APP_DIR, port=0, workers=2).start()
    pids = [w["pid"] for w in host.worker_stats()]
    assert all(alive(p) for p in pids)
    host.stop()
    assert wait_dead(pids, timeout=1) == []


# -- command line ----------------------------------------------------------------------------
def _start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "devhost", "--app-dir", str(APP_DIR), *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_until_listening(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[str, list[str]]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("devhost exited early:\n" + "".join(lines))
        lines.append(line)
        if line.startswith("devhost listening on "):
            return line.split()[-1], lines
    raise AssertionError("devhost did not start:\n" + "".join(lines))


def _worker_pids(lines: list[str]) -> list[int]:
    return [int(line.split("(pid ")[1].split(",")[0]) for line in lines if "worker process" in line and "(pid " in line]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_cli_with_azurite_serves_and_exits_0_on_sigterm(http):
    ensure_installed(ROOT)
    storage_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SAMPLE_STORAGE", "AzureWebJobsStorage")}
    env["SAMPLE_CONTAINER"] = "cli"
    proc = _start_cli(["--port", "0", "--azurite", "--azurite-port", str(storage_port)], env)
    try:
        url, lines = _read_until_listening(proc)
        workers = _worker_pids(lines)
        assert http.put(f"{url}/api/blobs/via-cli", data=b"cli").status_code == 201
        assert http.get(f"{url}/api/blobs/via-cli").content == b"cli"
        assert _port_open(storage_port)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert not _port_open(storage_port)  # Azurite was stopped too
    assert len(workers) == 1 and wait_dead(workers, timeout=1) == []
    assert "SAMPLE_STORAGE -> Azurite" in output
    assert ACCOUNT_KEY not in output


def test_cli_keys_file_and_workers_die_with_a_killed_front(tmp_path, http):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"functions": {"hello": {"default": HELLO_KEY}}}))
    env = {**os.environ, "SAMPLE_CONTAINER": CONTAINER, "FUNCTIONS_WORKER_PROCESS_COUNT": "2"}
    proc = _start_cli(["--port", "0", "--keys-file", str(keys_file)], env)
    try:
        url, lines = _read_until_listening(proc)
        workers = _worker_pids(lines)
        assert len(workers) == 2 and all(alive(p) for p in workers)
        assert http.get(f"{url}/api/hello").status_code == 401
        assert http.get(f"{url}/api/hello", headers={"x-functions-key": HELLO_KEY}).text == "hello"
        proc.kill()  # SIGKILL: the front cannot stop its workers itself
        proc.wait()
        assert wait_dead(workers) == []  # parent-death signal (and the closed channel)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert HELLO_KEY not in "".join(lines)


@pytest.mark.parametrize("argv", [["--keys-file", "/nonexistent/keys.json"]])
def test_cli_refuses_an_unreadable_keys_file(argv):
    done = subprocess.run([sys.executable, "-m", "devhost", "--app-dir", str(APP_DIR), "--port", "0", *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "cannot read the keys file" in done.stderr


def test_keys_file_format_is_checked(tmp_path):
    from devhost.auth import Keys, KeysError

    bad = tmp_path / "keys.json"
    for content in ('{"master": ""}', '{"hosts": {}}', '{"functions": {"f": {"default": 3}}}', "not json"):
        bad.write_text(content)
        with pytest.raises(KeysError):
            Keys.load(bad)
    bad.write_text(textwrap.dedent('{"master": "m", "host": {"a": "h"}, "functions": {"Hello": {"k": "f"}}}'))
    keys = Keys.load(bad)
    assert keys.level_of("f", "hello") == ("k", "function") and keys.level_of("f", "other") == (None, "anonymous")


# -- the process helpers every local tool uses -----------------------------------------------
def test_stop_child_escalates_to_sigkill_and_ports_are_picked():
    from devhost.processes import port_or_free, start_child, stop_child

    stubborn = start_child([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, "
                            "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                           stdout=subprocess.PIPE)
    assert stubborn.stdout.readline().strip() == b"ready"
    assert os.getpgid(stubborn.pid) == stubborn.pid  # a session (and group) of its own
    assert stop_child(stubborn, timeout=0.5) == -signal.SIGKILL
    stubborn.stdout.close()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert port_or_free(taken) != taken
    free = free_port()
    assert port_or_free(free) == free
