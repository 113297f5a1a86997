"""The data plane under a worker's thread pool, and its bounded cache."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from client.keys import SecretKeys
from scoring.bundles import BundleCache
from scoring.keys import load_bundle
from scoring.service import ScoringService, Settings
from helpers import score_in_process


def test_concurrent_requests_from_a_thread_pool_are_all_correct(digits_model_path, digits, digits_estimator):
    """Azure Functions runs sync functions in a thread pool: shared caches must hold up."""
    service = ScoringService(Settings(model_path=str(digits_model_path)))  # built lazily, under contention
    clients = [SecretKeys.generate() for _ in range(3)]
    X = digits[0][1500:1524]
    with ThreadPoolExecutor(6) as pool:
        scores = list(pool.map(lambda i: score_in_process(service, clients[i % 3], X[i]), range(len(X))))
    np.testing.assert_allclose(np.vstack(scores), digits_estimator.decision_function(X), atol=1e-5)
    assert len(service.bundles) == 3


def test_bundle_cache_is_bounded_and_keyed_by_version():
    cache = BundleCache(max_entries=2)
    bundles = [load_bundle(SecretKeys.generate().public_bundle()) for _ in range(3)]
    for bundle in bundles:
        cache.put("v1", bundle)
    assert len(cache) == 2 and not cache.contains(bundles[0].key_id)  # least recently used went first
    assert cache.get(bundles[2].key_id, "v1") is bundles[2]
    assert cache.get(bundles[2].key_id, "v2") is None  # another stored version is read again
