"""Client-side refusals that must happen before anything is sent."""

from __future__ import annotations

import pytest
import requests

from client import ScoringClient, SecretKeys
from client.storage import upload_bundle
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


def test_function_key_travels_in_a_header_not_the_url():
    client = ScoringClient("https://example.invalid/", function_key="k3y", session=requests.Session())
    assert client.session.headers["x-functions-key"] == "k3y"
    assert client.base_url == "https://example.invalid/api"
