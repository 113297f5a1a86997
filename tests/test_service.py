"""The data plane under a worker's thread pool, its caches and its pool of masked zeros."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from client.keys import SecretKeys
from scoring.bundles import BundleCache, InlineBundle
from scoring.errors import KeysNotFound, ModelMismatch, ServiceUnavailable
from scoring.keys import load_bundle
from scoring.protocol import ScoreRequest
from scoring.service import ScoringService
from scoring.settings import Settings
from helpers import score_in_process


def test_concurrent_requests_from_a_thread_pool_are_all_correct(digits_model_path, digits, digits_estimator):
    """Azure Functions runs sync functions in a thread pool: shared caches must hold up."""
    service = ScoringService(Settings(model_path=str(digits_model_path)))  # loaded lazily, under contention
    clients = [SecretKeys.generate() for _ in range(3)]
    X = digits[0][1500:1524]
    with ThreadPoolExecutor(6) as pool:
        scores = list(pool.map(lambda i: score_in_process(service, clients[i % 3], X[i]), range(len(X))))
    np.testing.assert_allclose(np.vstack(scores), digits_estimator.decision_function(X), atol=1e-5)
    assert len(service.bundles) == 3


def test_a_dry_pool_under_load_still_answers_every_request_correctly(digits_model_path, digits, digits_estimator):
    """Depth 1 and six threads: most requests find the pool empty and compute their masked zero
    inline; every answer is still right, and no prepared zero is handed out twice."""
    service = ScoringService(Settings(model_path=str(digits_model_path), zero_pool_depth=1))
    keys = SecretKeys.generate()
    X = digits[0][1500:1530]
    handed_out = []
    pools = service.loaded.pools
    take = pools.take

    def recording_take(bundle):
        zeros = take(bundle)
        handed_out.extend(zeros)  # kept alive, so that no two can share an id
        return zeros

    pools.take = recording_take
    with ThreadPoolExecutor(6) as pool:
        scores = list(pool.map(lambda x: score_in_process(service, keys, x), X))
    np.testing.assert_allclose(np.vstack(scores), digits_estimator.decision_function(X), atol=1e-5)
    assert pools.inline > 0 and len(handed_out) == len({id(z) for z in handed_out}) == len(X)


def test_prepared_zeros_refill_between_requests(digits_model_path, digits):
    service = ScoringService(Settings(model_path=str(digits_model_path), zero_pool_depth=3))
    keys = SecretKeys.generate()
    score_in_process(service, keys, digits[0][0])  # the first request computes inline and starts the filler
    pools = service.loaded.pools
    deadline = time.monotonic() + 10
    while pools.size(keys.key_id) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pools.size(keys.key_id) == 3  # bounded: never more than the depth
    inline = pools.inline
    score_in_process(service, keys, digits[0][1])
    assert pools.inline == inline  # served from the pool
    service.forget(keys.key_id)
    assert pools.size(keys.key_id) == 0


def test_without_a_pool_every_request_computes_its_own(digits_model_path, digits):
    service = ScoringService(Settings(model_path=str(digits_model_path), zero_pool_depth=0))
    keys = SecretKeys.generate()
    for x in digits[0][:3]:
        score_in_process(service, keys, x)
    assert service.loaded.pools.inline == 3 and service.loaded.pools.prepared == 0


def test_bundle_cache_is_bounded_and_revalidates_after_its_bound():
    now = [0.0]
    cache = BundleCache(max_entries=2, revalidate_seconds=60, clock=lambda: now[0])
    bundles = [load_bundle(SecretKeys.generate().public_bundle()) for _ in range(3)]
    evicted = [cache.put(bundle) for bundle in bundles]
    assert evicted[2] == [bundles[0].key_id] and len(cache) == 2  # least recently used went first
    assert cache.get(bundles[2].key_id) == (bundles[2], True)
    now[0] = 61.0
    assert cache.get(bundles[2].key_id) == (bundles[2], False)  # stale: ask storage once
    cache.put(bundles[2])
    assert cache.get(bundles[2].key_id) == (bundles[2], True)


class CountingSource(InlineBundle):
    def __init__(self, data):
        super().__init__(data)
        self.reads = self.checks = 0

    def exists(self) -> bool:
        self.checks += 1
        return super().exists()

    def read(self):
        self.reads += 1
        return super().read()


def test_a_cached_bundle_costs_no_storage_request_until_its_bound(digits_model_path, digits):
    service = ScoringService(Settings(model_path=str(digits_model_path), key_revalidate_seconds=0.3))
    keys = SecretKeys.generate()
    info = service.describe()
    request = ScoreRequest(keys.encrypt_record(info.record_encoding(), digits[0][0]), info.model_hash)
    source = CountingSource(keys.public_bundle())
    for _ in range(5):
        service.score(keys.key_id, source, request)
    assert (source.reads, source.checks) == (1, 0)  # content-addressed: nothing to re-validate
    time.sleep(0.35)
    service.score(keys.key_id, source, request)
    assert (source.reads, source.checks) == (1, 1)  # after the bound: one existence check
    source.data = None  # deleted from storage by someone else
    service.score(keys.key_id, source, request)  # still within the new bound
    time.sleep(0.35)
    with pytest.raises(KeysNotFound):
        service.score(keys.key_id, source, request)
    assert not service.bundles.contains(keys.key_id)


def test_a_request_for_another_model_is_409(service, keys, digits):
    info = service.describe()
    request = ScoreRequest(keys.encrypt_record(info.record_encoding(), digits[0][0]), "0" * 64)
    with pytest.raises(ModelMismatch, match=info.model_hash):
        service.score(keys.key_id, keys.public_bundle(), request)


def test_health_says_nothing_about_the_model_or_other_callers(service, keys, digits):
    before = service.health()
    score_in_process(service, keys, digits[0][0])
    assert service.health() == before == {"status": "ok"}


def test_an_unconfigured_model_is_503():
    with pytest.raises(ServiceUnavailable, match="SCORING_MODEL_PATH"):
        ScoringService(Settings()).describe()


def test_settings_are_read_once_and_refuse_what_is_not_a_number():
    settings = Settings.from_env({"SCORING_MODEL_PATH": "m.json", "SCORING_ZERO_POOL_DEPTH": "2",
                                  "SCORING_BATCH_SKIP_ZERO_FEATURES": "true", "SCORING_INPUT_BOUND": ""})
    assert (settings.model_path, settings.zero_pool_depth, settings.batch_skip_zero_features,
            settings.input_bound) == ("m.json", 2, True, None)
    with pytest.raises(ValueError, match="SCORING_KEY_CACHE_ENTRIES must be a int"):
        Settings.from_env({"SCORING_KEY_CACHE_ENTRIES": "many"})


# -- packed ciphertexts: the client's wire form, and SEAL's own beside it ---------------------------


def test_packed_and_seal_ciphertexts_score_alike_and_packing_saves_a_sixteenth(service, keys, digits,
                                                                              digits_estimator):
    from scoring.ckks import PACKED_CIPHERTEXT_MAGIC, canonical_ciphertext, runtime

    rt, info = runtime(), service.describe()
    packed = keys.encrypt_record(info.record_encoding(), digits[0][5])
    assert packed[0][:5] == PACKED_CIPHERTEXT_MAGIC + bytes([rt.word_bits]) and rt.word_bits == 60
    as_seal = tuple(canonical_ciphertext(rt, blob, scale=info.encryption.input_scale, seeded_only=True,
                                         seeded_ok=True, packed_ok=True) for blob in packed)  # SEAL's seeded form
    saved = rt.poly_words * (64 - rt.word_bits) // 8 + 16 - 5  # 4 of 64 bits, the SEAL header; the prefix
    assert len(as_seal[0]) - len(packed[0]) == saved
    for chunks in (packed, as_seal):
        response = service.score(keys.key_id, keys.public_bundle(), ScoreRequest(chunks, info.model_hash))
        scores = keys.decrypt_scores(info.record_encoding(), response.ciphertexts)
        np.testing.assert_allclose(scores, digits_estimator.decision_function(digits[0][5:6])[0], atol=1e-5)


@pytest.mark.parametrize("bits", [1, 7, 8, 17, 32, 33, 36, 44, 48, 50, 52, 59, 60, 63, 64])
def test_packing_is_the_little_endian_bit_string_of_the_words(bits):
    from scoring.ckks import pack_words, unpack_words

    rng = np.random.default_rng(bits)
    words = rng.integers(0, 2 ** min(bits, 63), size=128, dtype=np.uint64)
    words[:2] = (1 << bits) - 1, 0  # the widest value and the narrowest
    packed = pack_words(words, bits)
    bit_string = sum(int(w) << (i * bits) for i, w in enumerate(words))
    assert packed.astype("<u8").tobytes() == bit_string.to_bytes(128 * bits // 8, "little")
    assert np.array_equal(unpack_words(packed, bits, len(words)), words)
    if bits < 64:
        too_wide = words.copy()
        too_wide[5] = 1 << bits
        with pytest.raises(ValueError, match=f"does not fit in {bits} bits"):
            pack_words(too_wide, bits)


def test_a_key_bundle_must_hold_its_public_key_in_seals_form(keys):
    import tenseal.sealapi as seal

    from scoring.ckks import runtime
    from scoring.errors import KeysRejected
    from scoring.keys import build_bundle, parse_bundle

    parameters, public_key = parse_bundle(keys.public_bundle())
    rt = runtime()
    packed = rt.save_packed(rt.load(seal.Ciphertext(), public_key))  # one key, a second byte form, a second id
    with pytest.raises(KeysRejected, match="not a packed ciphertext"):
        load_bundle(build_bundle(packed, parameters))


def _replace_word(blob: bytes, index: int, value: int) -> bytes:
    from scoring.ckks import CIPHERTEXT_DATA_OFFSET, PACKED_PREFIX, pack_words, runtime, unpack_words

    rt = runtime()
    start, length = PACKED_PREFIX + CIPHERTEXT_DATA_OFFSET, rt.poly_words * rt.word_bits // 8
    words = unpack_words(np.frombuffer(blob, dtype="<u8", count=length // 8, offset=start), rt.word_bits,
                         rt.poly_words).copy()
    words[index] = value
    return blob[:start] + pack_words(words, rt.word_bits).tobytes() + blob[start + length:]


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:4] + b"\x40" + b[5:], "has 60-bit residues, not 64"),
    (lambda b: b[:40], "truncated \\(40 bytes\\)"),
    (lambda b: b[:5 + 97 + 100], "202 bytes do not match a packed ciphertext of 8192"),  # 97: SEAL's fields
    (lambda b: b[:5 + 89] + (8192 * 1000).to_bytes(8, "little") + b[5 + 97:], "8192000 coefficients do not match"),
    (lambda b: b[:-1], "do not match a packed ciphertext"),
    (lambda b: b + b"\x00", "do not match a packed ciphertext"),
    (lambda b: b[:-65] + b"\x09" + b[-64:], "malformed seed"),  # PRNG type 9
    (lambda b: _replace_word(b, 7, (1 << 60) - 1), "is not valid for the served parameters"),  # above q
])
def test_malformed_packed_ciphertexts_are_refused_saying_what(service, keys, digits, mutate, message):
    from scoring.errors import CiphertextRejected

    info = service.describe()
    chunks = keys.encrypt_record(info.record_encoding(), digits[0][5])
    with pytest.raises(CiphertextRejected, match=message):
        service.score(keys.key_id, keys.public_bundle(), ScoreRequest((mutate(chunks[0]),), info.model_hash))


def test_a_batch_cap_beyond_the_lanes_fails_the_start_naming_the_setting():
    with pytest.raises(ValueError, match="SCORING_BATCH_MAX_RECORDS is 9000; a batch has 8192 lanes at most"):
        Settings.from_env({"SCORING_MODEL_PATH": "m.json", "SCORING_BATCH_MAX_RECORDS": "9000"})
    assert Settings.from_env({"SCORING_BATCH_MAX_RECORDS": "8192"}).batch_max_records == 8192
