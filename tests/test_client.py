"""Client-side refusals that must happen before anything is sent, and the transports."""

from __future__ import annotations

import pytest
import requests

from client import ContainerTransport, FunctionsTransport, ScoringClient, SecretKeys
from keystore.blobs import upload_bundle
from scoring.ckks import runtime
from scoring.errors import KeysRejected
from scoring.keys import PREAMBLE, SECTION


class NoNetwork(requests.Session):
    """A session that fails the test if the client tries to send anything."""

    def request(self, method, url, *args, **kwargs):  # noqa: D401
        raise AssertionError(f"the client sent {method} {url}")


def bundle_with_secret(keys: SecretKeys) -> bytes:
    secret = runtime().save(keys.secret_key)
    return keys.public_bundle()[:PREAMBLE.size + 8] + SECTION.pack(b"SKEY", len(secret)) + secret


def test_client_refuses_to_upload_a_bundle_holding_a_secret_key():
    keys = SecretKeys.generate()
    keys._bundle = bundle_with_secret(keys)  # as if something had put the secret key in
    client = ScoringClient("http://127.0.0.1:9", keys=keys, session=NoNetwork())
    with pytest.raises(KeysRejected, match="holds a secret key"):
        client.upload_keys()
    with pytest.raises(KeysRejected, match="holds a secret key"):
        client.upload_keys_to_blob(connection_string="UseDevelopmentStorage=true")
    with pytest.raises(KeysRejected, match="holds a secret key"):
        upload_bundle(bundle_with_secret(keys), connection_string="UseDevelopmentStorage=true")


def test_function_key_travels_in_a_header_not_the_url_and_a_given_session_is_left_alone():
    session = requests.Session()
    adapters = dict(session.adapters)
    client = ScoringClient("https://example.invalid/", function_key="k3y", session=session)
    assert isinstance(client.transport, FunctionsTransport) and client.transport.url == "https://example.invalid/api"
    assert "x-functions-key" not in session.headers and session.adapters == adapters
    prepared = []
    session.send = lambda request, **kwargs: prepared.append(request) or (_ for _ in ()).throw(
        requests.ConnectionError("stop"))
    with pytest.raises(requests.ConnectionError):
        client.transport.model()
    assert prepared[0].headers["x-functions-key"] == "k3y" and "k3y" not in prepared[0].url


def test_a_session_made_by_the_client_retries_429_and_503():
    client = ScoringClient("https://example.invalid")
    retry = client.session.get_adapter("https://example.invalid").max_retries
    assert retry.total == 3 and set(retry.status_forcelist) == {429, 503} and retry.respect_retry_after_header


def test_the_container_is_one_url_and_takes_no_key_uploads():
    client = ScoringClient("http://127.0.0.1:5001/score/", session=NoNetwork())
    assert isinstance(client.transport, ContainerTransport) and client.transport.url == "http://127.0.0.1:5001/score"
    with pytest.raises(NotImplementedError, match="takes no key uploads"):
        client.transport.put_keys("a" * 64, b"")


def test_an_endpoint_or_a_transport_not_both():
    with pytest.raises(ValueError, match="not both"):
        ScoringClient("http://x", transport=FunctionsTransport("http://x"))
