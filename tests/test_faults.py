"""Faults: storage going away under the running app, and bundles deleted or replaced behind it.

A key id is the SHA-256 of the bundle, so a parsed bundle in the cache is never stale: the
app asks storage nothing for it until ``SCORING_KEY_REVALIDATE_SECONDS`` have passed, then
whether it still exists. What that means, tested here over HTTP:

* a storage outage does not stop callers whose bundles are cached; any request that needs
  storage gets a 503 with ``Retry-After`` within seconds, and all recover when storage returns;
* a bundle deleted through the app is refused (404) at once by the instance that deleted it,
  and by every instance within the bound when deleted by any other means;
* a blob replaced under the same name cannot be used: an instance that had not cached the
  bundle reads it, finds it does not hash to its name, and refuses it (422).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from client import ScoringClient, ServiceError
from conftest import running_app


@pytest.fixture()
def own_azurite(tmp_path):
    """An Azurite of this test's own, with a kept folder so a restart keeps the data."""
    from devhost.azurite import Azurite

    with Azurite(port=0, location=tmp_path / "azurite") as service:
        yield service


def container(azurite, name: str):
    return BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(name)


def test_storage_outage_is_503_with_retry_after_for_what_needs_storage_and_recovers(
        own_azurite, digits_model_path, digits, digits_estimator):
    X, _ = digits
    with running_app(own_azurite, digits_model_path) as host:
        cached = ScoringClient(host.url, retries=0)
        record = cached.encrypt(X[1500])
        expected = digits_estimator.decision_function(X[1500:1501])[0]
        np.testing.assert_allclose(cached.decrypt(cached.score(record)), expected, atol=1e-5)
        uncached = ScoringClient(host.url, retries=0)
        uncached.upload_keys()  # stored, never scored: not in the cache

        own_azurite.stop()
        np.testing.assert_allclose(cached.decrypt(cached.score(record)), expected, atol=1e-5)  # no storage needed
        started = time.perf_counter()
        with pytest.raises(ServiceError) as caught:
            uncached.score(uncached.encrypt(X[1500]))
        elapsed = time.perf_counter() - started
        assert caught.value.status == 503 and caught.value.code == "unavailable"
        assert caught.value.response.headers["Retry-After"] == "5"
        assert "blob storage is unreachable" in caught.value.message
        assert elapsed < 15, f"the outage took {elapsed:.1f} s to report"
        proof = {"X-Key-Proof": "0" * 32}  # well formed, so the deletion asks storage
        for response in (requests.delete(f"{host.url}/api/keys/{cached.keys.key_id}", headers=proof, timeout=30),
                         requests.post(f"{host.url}/api/keys/{cached.keys.key_id}/challenge", timeout=30)):
            assert response.status_code == 503 and response.headers["Retry-After"] == "5"

        own_azurite.start()  # same port, same folder: the bundles are still there
        np.testing.assert_allclose(uncached.decrypt(uncached.score(uncached.encrypt(X[1500]))), expected,
                                   atol=1e-5)
        assert cached.delete_keys() and uncached.delete_keys()


def test_a_bundle_deleted_through_the_app_is_refused_at_once(azurite, digits_model_path, digits):
    with running_app(azurite, digits_model_path, container="deletedkeys") as host:
        client = ScoringClient(host.url, retries=0, upload=False)
        client.upload_keys()
        record = client.encrypt(digits[0][1500])
        client.score(record)  # cached now
        assert client.delete_keys() is True
        with pytest.raises(ServiceError) as caught:
            client.score(record)
        assert caught.value.status == 404 and caught.value.code == "keys_not_found"


def test_a_bundle_deleted_behind_the_app_is_refused_within_the_bound(azurite, digits_model_path, digits):
    with running_app(azurite, digits_model_path, container="behindkeys",
                     SCORING_KEY_REVALIDATE_SECONDS="1") as host:
        client = ScoringClient(host.url, retries=0, upload=False)
        client.upload_keys()
        record = client.encrypt(digits[0][1500])
        client.score(record)
        container(azurite, "behindkeys").delete_blob(client.keys.key_id)  # the portal, another instance
        client.score(record)  # within the bound: still the cached bundle
        time.sleep(1.2)
        with pytest.raises(ServiceError) as caught:
            client.score(record)
        assert caught.value.status == 404


def test_a_replaced_bundle_is_refused_where_it_is_read(azurite, digits_model_path, digits):
    """Only possible outside the service: the blob under a key id overwritten with other bytes."""
    with running_app(azurite, digits_model_path, container="replacedkeys") as host:
        victim = ScoringClient(host.url, retries=0, upload=False)
        victim.upload_keys()
        other = ScoringClient(host.url)
        container(azurite, "replacedkeys").upload_blob(victim.keys.key_id, other.keys.public_bundle(),
                                                       overwrite=True)
        with pytest.raises(ServiceError) as caught:
            victim.score(victim.encrypt(digits[0][1500]))
        assert caught.value.status == 422 and "does not hash to its key id" in caught.value.message
