"""Faults: storage going away under the running app, and bundles deleted while cached."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from client import ScoringClient, ServiceError
from conftest import running_app
from scoring import protocol


@pytest.fixture()
def own_azurite(tmp_path):
    """An Azurite of this test's own, with a kept folder so a restart keeps the data."""
    from devhost.azurite import Azurite

    with Azurite(port=0, location=tmp_path / "azurite") as service:
        yield service


def test_storage_outage_is_503_with_retry_after_and_recovers(own_azurite, digits_model_path, digits,
                                                             digits_estimator):
    X, _ = digits
    with running_app(own_azurite, digits_model_path) as host:
        client = ScoringClient(host.url, retries=0)
        record = client.encrypt(X[1500])
        expected = digits_estimator.decision_function(X[1500:1501])[0]
        np.testing.assert_allclose(client.decrypt(client.score(record)), expected, atol=1e-5)

        own_azurite.stop()
        started = time.perf_counter()
        with pytest.raises(ServiceError) as caught:
            client.score(record)
        elapsed = time.perf_counter() - started
        assert caught.value.status == 503 and caught.value.code == "unavailable"
        assert caught.value.response.headers["Retry-After"] == "5"
        assert "blob storage is unreachable" in caught.value.message
        assert elapsed < 15, f"the outage took {elapsed:.1f} s to report"
        delete = requests.delete(f"{host.url}/api/keys/{client.keys.key_id}", timeout=30)
        assert delete.status_code == 503 and delete.headers["Retry-After"] == "5"

        own_azurite.start()  # same port, same folder: the bundle is still there
        np.testing.assert_allclose(client.decrypt(client.score(record)), expected, atol=1e-5)


def test_bundle_deleted_while_cached_is_refused_on_the_next_request(azurite, digits_model_path, digits):
    """Defined behaviour: every score checks the stored bundle's ETag (one metadata request),
    so a bundle deleted from storage by any means is refused with 404 at once, on every
    instance, although the parsed bundle was cached; the cache entry is dropped."""
    import hosts.functions

    X, _ = digits
    with running_app(azurite, digits_model_path, container="deletedkeys") as host:
        client = ScoringClient(host.url, retries=0)
        record = client.encrypt(X[1500])
        client.score(record)
        assert hosts.functions.service().bundles.contains(client.keys.key_id)
        BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
            "deletedkeys").delete_blob(client.keys.key_id)
        response = requests.post(f"{host.url}/api/score/{client.keys.key_id}", data=b"{}",
                                 headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 400  # malformed body is refused before any storage read
        body, content_type = protocol.encode(protocol.ScoreMessage(record.ciphertexts, record.model_hash),
                                             binary=True, response=False)
        response = requests.post(f"{host.url}/api/score/{client.keys.key_id}", data=body,
                                 headers={"content-type": content_type}, timeout=30)
        assert response.status_code == 404 and response.json()["error"] == "keys_not_found"
        assert not hosts.functions.service().bundles.contains(client.keys.key_id)


def test_replaced_bundle_is_read_again(azurite, digits_model_path, digits):
    """A blob overwritten under the same name (only possible outside the service) gets a new
    ETag; the service reads it again and, as it no longer hashes to its name, refuses it."""
    X, _ = digits
    with running_app(azurite, digits_model_path, container="replacedkeys") as host:
        client = ScoringClient(host.url, retries=0)
        record = client.encrypt(X[1500])
        client.score(record)
        other = ScoringClient(host.url)
        BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
            "replacedkeys").upload_blob(client.keys.key_id, other.keys.public_bundle(), overwrite=True)
        with pytest.raises(ServiceError) as caught:
            client.score(record)
        assert caught.value.status == 422 and "does not hash to its key id" in caught.value.message
