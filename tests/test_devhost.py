"""devhost against a real Azurite: routes, bindings from the app's metadata, limits and faults.

The sample app is tests/devhost_app; every request goes over HTTP to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT_KEY, Azurite, ensure_installed, free_port
from devhost.host import LocalFunctionsHost

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = Path(__file__).resolve().parent / "devhost_app"
CONTAINER = "samples"


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


# -- routing ---------------------------------------------------------------------------------
def test_route_params_query_and_headers_reach_the_function(host, http):
    r = http.get(f"{host.url}/api/echo/b%C3%B6b?x=1&flag=&x=2", headers={"X-Sample": "yes"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"route": {"name": "böb"}, "query": {"x": "1,2", "flag": ""},
                        "method": "GET", "header": "yes"}


def test_literal_segments_match_case_insensitively_with_optional_trailing_slash(host, http):
    assert http.get(f"{host.url}/API/Echo/abc/").json()["route"] == {"name": "abc"}


def test_unknown_paths_are_404(host, http):
    for path in ("/api/nope", "/api/echo", "/api/echo/a/b", "/echo/a", "/api/blobs/"):
        assert http.get(host.url + path).status_code == 404, path


def test_wrong_method_is_405_with_allow_header(host, http):
    r = http.delete(f"{host.url}/api/blobs/x")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, PUT"
    assert http.post(f"{host.url}/api/echo/x").headers["Allow"] == "GET"


def test_route_constraint_and_async_function(host, http):
    r = http.get(f"{host.url}/api/items/42")
    assert (r.status_code, r.text) == (200, "item 42")
    assert http.get(f"{host.url}/api/items/abc").status_code == 404


# -- blob bindings ---------------------------------------------------------------------------
def test_blob_round_trip_through_output_and_input_bindings(host, http, blobs):
    payload = bytes(range(256)) * 10
    first = http.put(f"{host.url}/api/blobs/round-trip.bin", data=payload)
    assert first.status_code == 201
    assert first.json() == {"existed": False, "type": "NoneType", "previous_size": None}
    assert read_blob(blobs, CONTAINER, "round-trip.bin") == payload  # really in Azurite

    second = http.put(f"{host.url}/api/blobs/round-trip.bin", data=b"second")
    assert second.status_code == 200
    # the input binding saw the first blob, as an InputStream (no annotation other than that)
    assert second.json() == {"existed": True, "type": "InputStream", "previous_size": len(payload)}
    assert read_blob(blobs, CONTAINER, "round-trip.bin") == b"second"

    got = http.get(f"{host.url}/api/blobs/round-trip.bin")
    assert (got.status_code, got.content) == (200, b"second")
    assert got.headers["X-Blob-Type"] == "bytes"  # dataType BINARY + bytes annotation
    assert http.get(f"{host.url}/api/text/round-trip.bin").text == "str:second"


def test_input_binding_reads_a_blob_written_directly(host, http, blobs):
    blobs.get_blob_client(CONTAINER, "direct.txt").upload_blob(b"hello", overwrite=True)
    assert http.get(f"{host.url}/api/blobs/direct.txt").content == b"hello"


def test_missing_blob_is_passed_as_none(host, http, blobs):
    r = http.get(f"{host.url}/api/blobs/does-not-exist")
    assert (r.status_code, r.text) == (404, "no such blob")  # the function itself answered
    put = http.put(f"{host.url}/api/blobs/fresh", data=b"1")
    assert put.json()["existed"] is False


def test_setting_in_path_is_expanded_per_invocation(host, http, blobs, monkeypatch):
    monkeypatch.setenv("SAMPLE_CONTAINER", "other-container")
    assert http.put(f"{host.url}/api/blobs/moved", data=b"elsewhere").status_code == 201
    assert read_blob(blobs, "other-container", "moved") == b"elsewhere"  # container created
    assert not blobs.get_blob_client(CONTAINER, "moved").exists()


def test_unset_setting_in_path_is_a_binding_failure(host, http, monkeypatch, caplog):
    monkeypatch.delenv("SAMPLE_CONTAINER")
    with caplog.at_level(logging.ERROR, logger="devhost"):
        r = http.get(f"{host.url}/api/blobs/x")
    assert r.status_code == 500
    assert "SAMPLE_CONTAINER" not in r.text
    assert "SAMPLE_CONTAINER" in caplog.text


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


def test_chunked_body_under_the_cap_is_read_fully(small_host, http, blobs):
    r = http.put(f"{small_host.url}/api/blobs/chunked", data=iter([b"ab", b"", b"cd" * 100]))
    assert r.status_code == 201
    assert read_blob(blobs, CONTAINER, "chunked") == b"ab" + b"cd" * 100


def test_exception_is_500_without_traceback_and_logged_on_the_host(host, http, caplog):
    with caplog.at_level(logging.INFO, logger="devhost"):
        r = http.get(f"{host.url}/api/boom?code=hunter2")
        # the access line is written by the server thread just after the response is sent
        deadline = time.monotonic() + 5
        while "GET /api/boom 500" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert r.status_code == 500
    assert "Traceback" not in r.text and "secret-internal-detail" not in r.text
    assert "secret-internal-detail" in caplog.text and "Traceback" in caplog.text
    assert "GET /api/boom 500" in caplog.text  # the access line
    assert "hunter2" not in caplog.text  # query strings are never logged


def test_storage_down_is_500_then_recovers(host, http, azurite, caplog):
    assert http.put(f"{host.url}/api/blobs/survivor", data=b"kept").status_code == 201
    azurite.stop()
    try:
        with caplog.at_level(logging.ERROR, logger="devhost"):
            down = http.get(f"{host.url}/api/blobs/survivor")
        assert down.status_code == 500
        assert "Traceback" not in down.text
        assert "binding failed" in caplog.text
        assert ACCOUNT_KEY not in caplog.text
    finally:
        azurite.start()  # same port, same data folder
    up = http.get(f"{host.url}/api/blobs/survivor")
    assert (up.status_code, up.content) == (200, b"kept")


# -- command line ----------------------------------------------------------------------------
def _wait_for_http(http: requests.Session, url: str, proc: subprocess.Popen,
                   timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"devhost exited early: {proc.communicate()[0]}")
        try:
            http.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError("devhost did not start")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_cli_with_azurite_serves_and_exits_0_on_sigterm(http):
    ensure_installed(ROOT)
    port, storage_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SAMPLE_STORAGE", "AzureWebJobsStorage")}
    env["SAMPLE_CONTAINER"] = "cli"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--app-dir", str(APP_DIR), "--port", str(port),
         "--azurite", "--azurite-port", str(storage_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_http(http, f"http://127.0.0.1:{port}/api/echo/up", proc)
        assert http.put(f"http://127.0.0.1:{port}/api/blobs/via-cli", data=b"cli").status_code == 201
        assert http.get(f"http://127.0.0.1:{port}/api/blobs/via-cli").content == b"cli"
        assert _port_open(storage_port)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert not _port_open(storage_port)  # Azurite was stopped too
    assert "SAMPLE_STORAGE -> Azurite" in output
    assert ACCOUNT_KEY not in output


def test_unread_body_of_a_404_does_not_corrupt_the_next_request(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=5) as sock:
        sock.sendall(b"POST /api/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n"
                     b"GET /api/echo/smuggled HTTP/1.1")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 404") and reply.count(b"HTTP/1.1") == 1
