"""Key bundles: build, id, strict parsing, and refusal of secret keys and foreign parameters."""

from __future__ import annotations

import hashlib
import stat
import struct
from pathlib import Path

import pytest

from client.keys import FILE_MAGIC, SecretKeys, load_secret_key, save_secret_key
from scoring.ckks import PRNG_INFO_SIZE, runtime
from scoring.errors import BadRequest, KeysRejected
from scoring.keys import PREAMBLE, SECTION, check_key_id, key_id_of, load_bundle, parse_bundle
from scoring.parameters import CkksParameters


def bundle_with_sections(keys: SecretKeys, sections: list[tuple[bytes, bytes]]) -> bytes:
    bundle = keys.public_bundle()
    head = bundle[:PREAMBLE.size + 8]
    return head + b"".join(SECTION.pack(tag, len(payload)) + payload for tag, payload in sections)


def test_bundle_is_small_public_and_named_by_its_hash(keys):
    bundle = keys.public_bundle()
    assert len(bundle) <= 140_000
    assert keys.key_id == hashlib.sha256(bundle).hexdigest() == key_id_of(bundle)
    loaded = load_bundle(bundle, keys.key_id)
    assert loaded.key_id == keys.key_id and loaded.parameters == keys.parameters
    assert runtime().save_body(keys.secret_key)[80:200] not in bundle  # no secret material
    assert len(bundle) <= 70_000  # the seeded form: half a full public key


def test_bundle_under_a_wrong_id_is_refused(keys):
    with pytest.raises(KeysRejected, match="does not hash to its key id"):
        load_bundle(keys.public_bundle(), "0" * 64)


def test_bundle_holding_a_secret_key_is_refused(keys):
    secret_blob = runtime().save(keys.secret_key)
    public_blob = keys.public_bundle()[PREAMBLE.size + 8 + SECTION.size:]
    with pytest.raises(KeysRejected, match="holds a secret key"):
        parse_bundle(bundle_with_sections(keys, [(b"PKEY", public_blob), (b"SKEY", secret_blob)]))
    with pytest.raises(KeysRejected, match="holds a secret key"):
        parse_bundle(bundle_with_sections(keys, [(b"PKEY", secret_blob)]))


def test_bundle_for_other_parameters_is_refused(keys):
    bundle = bytearray(keys.public_bundle())
    struct.pack_into("<I", bundle, 8, 4096)
    with pytest.raises(KeysRejected, match="does not serve"):
        parse_bundle(bytes(bundle))
    with pytest.raises(KeysRejected, match="does not serve"):
        parse_bundle(keys.public_bundle(), served=(CkksParameters(8192, (1152921504606748673,)),))


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:10], "truncated|too short"),
    (lambda b: b"XXXX" + b[4:], "bad magic"),
    (lambda b: b[:4] + b"\x07" + b[5:], "version 7"),
    (lambda b: b[:-1], "runs past the end|do not match|declares"),
    (lambda b: b + b"\x00" * 8, "truncated section|unexpected or repeated"),
    (lambda b: b"", "too short"),
])
def test_malformed_bundles_are_refused_with_a_reason(keys, mutate, message):
    with pytest.raises(KeysRejected, match=message):
        parse_bundle(mutate(keys.public_bundle()))


def test_public_key_with_coefficients_beyond_the_modulus_is_refused(keys):
    bundle = bytearray(keys.public_bundle())
    last = len(bundle) - PRNG_INFO_SIZE  # the seed follows the first part's coefficients
    bundle[last - 8:last] = b"\xff" * 8  # last coefficient above q
    with pytest.raises(KeysRejected, match="not valid"):
        load_bundle(bytes(bundle))


@pytest.mark.parametrize("key_id", ["", "abc", "A" * 64, "../" + "a" * 61, "a" * 63 + "/", "g" * 64, "a" * 65])
def test_key_ids_must_be_64_lowercase_hex(key_id):
    with pytest.raises(BadRequest, match="64 lowercase hex"):
        check_key_id(key_id)


def test_secret_key_file_is_owner_read_only_and_round_trips(tmp_path):
    keys = SecretKeys.generate()
    path = save_secret_key(keys, tmp_path / "me.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert path.read_bytes() == FILE_MAGIC + b"\x02" + keys.to_bytes()
    again = load_secret_key(path)
    assert again.key_id == keys.key_id
    blob = keys.encrypt_coefficients([0.5, -0.25], 2.0 ** 20)
    # the reloaded secret key decrypts what the original encrypted:
    assert again.decrypt_coefficients(_unseeded(blob, 2.0 ** 20), 2.0 ** 20)[:2] == pytest.approx([0.5, -0.25],
                                                                                                   abs=1e-5)
    with pytest.raises(FileExistsError):
        save_secret_key(keys, path)


def _unseeded(blob: bytes, scale: float) -> bytes:
    """A result-like (unseeded) copy of a seeded ciphertext, as decryption takes it."""
    import tenseal.sealapi as seal

    from scoring.ckks import canonical_ciphertext

    rt = runtime()
    checked = canonical_ciphertext(rt, blob, scale=scale, seeded_ok=True, packed_ok=True)
    return rt.save_canonical(rt.load(seal.Ciphertext(), checked))


def test_packed_keys_fit_a_key_vault_secret_and_rebuild_the_same_key_pair():
    keys = SecretKeys.generate()
    packed = keys.to_bytes()
    assert len(packed) <= 4096  # Azure Key Vault: 25 KB; a Databricks secret: 128 KB
    again = SecretKeys.from_bytes(packed)
    assert again.key_id == keys.key_id and again.public_bundle() == keys.public_bundle()
    assert again.to_bytes() == packed
    load_bundle(again.public_bundle(), again.key_id)  # the service accepts it


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b"", "not packed secret keys"),
    (lambda b: b"XXXX" + b[4:], "not packed secret keys"),
    (lambda b: b[:4] + b"\x09" + b[5:], "version 9 are not supported"),
    (lambda b: b[:10], "truncated or malformed parameters"),
    (lambda b: b[:5] + struct.pack("<I", 4096) + b[9:], "which this library does not serve"),
    (lambda b: b[:-1], "need exactly"),
    (lambda b: b + b"\x00", "need exactly"),
    (lambda b: b[:18] + b"\xff" + b[19:], "code 3"),
    (lambda b: b[:18 + 2048] + b"\x07" + b[18 + 2049:], "unknown PRNG type 7"),
])
def test_malformed_packed_keys_are_a_value_error_that_says_what(keys, mutate, message):
    with pytest.raises(ValueError, match=message):
        SecretKeys.from_bytes(mutate(keys.to_bytes()))


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b"", "not a secret key file"),
    (lambda b: b"HESECRET", "not a secret key file"),
    (lambda b: b[:15], "packed secret keys are truncated"),
    (lambda b: b"HESECRET\x07" + b[9:], "file version 7 is not supported"),
    (lambda b: b[:20], "truncated or malformed parameters"),
    (lambda b: b[:-3], "need exactly"),
])
def test_malformed_secret_key_files_are_a_value_error_naming_the_file(tmp_path, keys, mutate, message):
    path = tmp_path / "broken.key"
    path.write_bytes(mutate(FILE_MAGIC + b"\x02" + keys.to_bytes()))
    with pytest.raises(ValueError, match=message) as caught:
        load_secret_key(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("cut", [9, 12, 20, 30, 2000, 65_000, 131_000])
def test_a_truncated_version_1_file_is_a_value_error_not_a_struct_error(tmp_path, cut):
    legacy = (Path(__file__).parent / "golden" / "v1" / "secret.key").read_bytes()
    path = tmp_path / "legacy.key"
    path.write_bytes(legacy[:cut])
    with pytest.raises(ValueError, match="truncated|malformed|corrupt") as caught:
        load_secret_key(path)
    assert str(path) in str(caught.value)
