"""The valid inputs every case mutates, made with real keys against the served model.

:func:`build_material` makes, with a real client key: its bundle, a request for one record
(seeded, as the client sends it), the same record encrypted with the public key (two full
parts), a real response, the secret key as SEAL saves it, the public key in full form, a
ciphertext for other parameters, a TenSEAL context with its secret key, a valid batch in
coefficient lanes, and crafted keys (a secret of 0, 1 or -1, which the service must refuse
by name; a secret of 2 or the sparse X, which pass and must still answer correctly).

Crafted keys and noiseless queries come from ``tests/attacker.py``, the hostile client's
toolkit the privacy tests use: the fuzzer plays the same client.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client.keys import SecretKeys
from scoring import protocol
from scoring.encoding import LaneEncoding, RecordEncoding
from scoring.keys import PREAMBLE, SECTION
from scoring.protocol import ModelDescription, ScoreRequest, WireForm

from .blobs import claiming_fields as fields_claiming, key_bundle

ROOT = Path(__file__).resolve().parents[2]
BATCH_RECORDS = 3  # records in the valid batch; lanes beyond them hold zeros


@dataclass(frozen=True)
class BatchMaterial:
    """A valid batch in coefficient lanes, and what its answer must decrypt to.

    Attributes:
        columns: one seeded ciphertext per sent feature, ``records`` lanes filled.
        full_column: the first column loaded and saved again: two full parts.
        rows: the records in the clear, shape (records, features).
        expected: the plaintext model's scores of the records, shape (records, outputs).
        intercept: the scores of an empty lane (every feature 0): the model's bias.
    """

    encoding: LaneEncoding
    columns: tuple[bytes, ...]
    full_column: bytes
    records: int
    rows: tuple[tuple[float, ...], ...]
    expected: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]

    def expected_scores(self, records: int) -> np.ndarray:
        """The scores an answer declaring ``records`` records must hold: the batch's records,
        then empty lanes (their features encrypt 0, so they score the bias)."""
        held = np.asarray(self.expected)[:records]
        empty = np.tile(np.asarray(self.intercept), (max(0, records - len(held)), 1))
        return np.vstack([held, empty])


@dataclass(frozen=True)
class CraftedKey:
    """Keys a hostile client made with a secret of its choosing.

    Attributes:
        refusal: the reason the service must give for refusing the bundle ("its secret is
            0", ...), or None if it passes the key checks.
        ciphertexts: for a key that passes, the material's record encrypted with its secret.
        exact_ciphertexts: the same record with no encryption noise at all.
        columns: the material's batch encrypted with its secret (the sparse secret only, and
            only with a batch path).
    """

    name: str
    keys: SecretKeys
    refusal: str | None
    ciphertexts: tuple[bytes, ...] = ()
    exact_ciphertexts: tuple[bytes, ...] = ()
    columns: tuple[bytes, ...] = ()

    @property
    def bundle(self) -> bytes:
        return self.keys.public_bundle()

    @property
    def key_id(self) -> str:
        return self.keys.key_id


@dataclass
class Material:
    """Valid inputs made with a real key; every case is a mutation of these.

    Attributes:
        owner: the keys that made them (they answer challenges and decrypt answers).
        ciphertexts: the request's chunks in SEAL's seeded, uncompressed form (whose fields
            the mutators know).
        packed_ciphertexts: the same chunks as the client sends them (residues packed).
        full_ciphertexts: the same record encrypted with the public key (two full parts).
        full_public_key: the bundle's public key expanded from its seed (two full parts),
            a form the service refuses: its random part would be the client's choice.
        expected: the plaintext model's scores for the record (reference for successes).
        max_request_bytes: the single-record body cap; max_body_bytes: the largest body
            read at all (the batch cap if there is a batch path).
    """

    owner: SecretKeys
    description: ModelDescription
    record_encoding: RecordEncoding
    bundle: bytes
    ciphertexts: tuple[bytes, ...]
    packed_ciphertexts: tuple[bytes, ...]
    full_ciphertexts: tuple[bytes, ...]
    result_ciphertext: bytes
    secret_key: bytes            # as SEAL saves it (zstd-compressed)
    secret_key_raw: bytes        # uncompressed
    full_public_key: bytes
    foreign_ciphertext: bytes    # made under other parameters (N=4096)
    tenseal_context: bytes       # a TenSEAL context serialized with its secret key (or b"")
    model_hash: str
    other_model_hash: str
    input_scale: float
    max_request_bytes: int
    max_body_bytes: int
    max_bundle_bytes: int
    degree: int
    moduli: tuple[int, ...]
    parms_id: bytes
    other_parms_id: bytes
    seal_version: tuple[int, int]
    record: tuple[float, ...]
    expected: tuple[float, ...]
    batch: BatchMaterial | None = None
    crafted: dict[str, CraftedKey] = field(default_factory=dict)

    @property
    def key_id(self) -> str:
        return self.owner.key_id

    @property
    def modulus(self) -> int:
        return self.moduli[0]

    @property
    def poly_words(self) -> int:
        return len(self.moduli) * self.degree

    def keys_for(self, owner: str) -> SecretKeys:
        """The keys a case's request was made with ("" is the material's own)."""
        return self.crafted[owner].keys if owner else self.owner

    def request(self, ciphertexts=None, *, binary: bool = True, model_hash: str | None | bool = True,
                records: int | None = None) -> tuple[bytes, str]:
        """A request body (and content type) carrying ``ciphertexts`` (default: the valid ones).

        ``records`` makes it a batch of that many records (one ciphertext per feature).
        """
        digest = self.model_hash if model_hash is True else model_hash
        chunks = self.ciphertexts if ciphertexts is None else tuple(ciphertexts)
        form = WireForm.BINARY if binary else WireForm.JSON
        return protocol.encode_request(ScoreRequest(chunks, digest, records), form), form.content_type

    def bundle_head(self) -> bytes:
        """The bundle's preamble and primes."""
        return self.bundle[:PREAMBLE.size + 8 * len(self.moduli)]

    def public_key_blob(self) -> bytes:
        """The bundle's public key blob (seeded, uncompressed)."""
        return self.bundle[PREAMBLE.size + 8 * len(self.moduli) + SECTION.size:]

    def bundle_with(self, sections, head: bytes | None = None) -> bytes:
        """A bundle of the material's parameters (or ``head``) with these (tag, payload) sections."""
        return key_bundle(self.bundle_head() if head is None else head, sections)

    def claiming_fields(self, *, parts: int, scale: float) -> bytes:
        """Ciphertext fields for the served parameters claiming ``parts`` polynomials."""
        return fields_claiming(self.seal_version, self.parms_id, self.degree, len(self.moduli), parts=parts,
                               scale=scale)


def build_material(service, keys: SecretKeys, record) -> Material:
    """Make the valid inputs with ``keys`` for ``service`` (a ``scoring.service.ScoringService``)."""
    import tenseal.sealapi as seal

    from scoring.ckks import canonical_ciphertext, runtime
    from scoring.keys import MAX_BUNDLE_BYTES, load_bundle, parse_bundle
    from scoring.parameters import CkksParameters

    loaded = service.load()
    description = service.describe()
    encoding = description.record_encoding()
    rt = loaded.rt
    record = np.asarray(record, dtype=np.float64)
    bundle = keys.public_bundle()
    packed = tuple(keys.encrypt_record(encoding, record))
    ciphertexts = tuple(canonical_ciphertext(rt, blob, scale=encoding.input_scale, seeded_ok=True, packed_ok=True)
                        for blob in packed)
    encryptor = load_bundle(bundle).encryptor
    full = []
    for chunk in encoding.chunks(record):
        ct = seal.Ciphertext()
        encryptor.encrypt(rt.encode_coefficients(chunk, encoding.input_scale), ct)
        full.append(rt.save_canonical(ct))
    response = service.score(keys.key_id, bundle, ScoreRequest(ciphertexts, description.model_hash))
    _, public_key = parse_bundle(bundle)
    small = CkksParameters(4096, (seal.CoeffModulus.Create(4096, [60])[0].value(),))
    small_rt = runtime(small)
    foreign = small_rt.save_canonical(small_rt.load(seal.Ciphertext(), SecretKeys.generate(small).encrypt_coefficients(
        np.zeros(16), encoding.input_scale)))
    try:
        import tenseal as ts

        context = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60], n_threads=1)
        tenseal_context = context.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    except Exception:  # noqa: BLE001 - an optional extra input
        tenseal_context = b""
    model = loaded.model
    batch = _batch_material(description, keys, record, model, rt)
    return Material(
        owner=keys, description=description, record_encoding=encoding, bundle=bundle, ciphertexts=ciphertexts,
        packed_ciphertexts=packed, full_ciphertexts=tuple(full), result_ciphertext=response.ciphertexts[0], secret_key=rt.save(keys.secret_key),
        secret_key_raw=rt.save_canonical(keys.secret_key),
        full_public_key=rt.save_canonical(rt.load(seal.Ciphertext(), public_key)), foreign_ciphertext=foreign,
        tenseal_context=tenseal_context, model_hash=description.model_hash,
        other_model_hash=format(int(description.model_hash, 16) ^ 1, "064x"), input_scale=encoding.input_scale,
        max_request_bytes=description.limits.max_request_bytes, max_body_bytes=description.limits.largest,
        max_bundle_bytes=MAX_BUNDLE_BYTES, degree=rt.degree, moduli=tuple(int(q) for q in rt.moduli),
        parms_id=rt.parms_id_bytes, other_parms_id=foreign[16:48], seal_version=rt.seal_version,
        record=tuple(record.tolist()), expected=tuple(model.decision_function(record[None, :])[0].tolist()),
        batch=batch, crafted=_crafted_keys(rt.degree, encoding, record, batch))


def _batch_material(description: ModelDescription, keys: SecretKeys, record: np.ndarray, model,
                    rt) -> BatchMaterial | None:
    """A valid batch of ``BATCH_RECORDS`` records if the service offers a batch path, else None."""
    import tenseal.sealapi as seal

    from scoring.ckks import canonical_ciphertext

    encoding = description.lane_encoding()
    if encoding is None:
        return None
    X = np.stack([record * f for f in np.linspace(1.0, -1.0, BATCH_RECORDS)])
    columns = tuple(canonical_ciphertext(rt, blob, scale=encoding.input_scale, seeded_ok=True, packed_ok=True)
                    for blob in keys.encrypt_columns(encoding, X))  # SEAL's form, whose fields mutators know
    full = rt.save_canonical(rt.load(seal.Ciphertext(), columns[0]))
    return BatchMaterial(encoding, columns, full, BATCH_RECORDS, tuple(tuple(row) for row in X.tolist()),
                         tuple(tuple(row) for row in model.decision_function(X).tolist()),
                         tuple(model.intercept.tolist()))


def attacker():
    """``tests/attacker.py``: crafted keys and noiseless queries, as the privacy tests make them."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    import attacker as toolkit

    return toolkit


def _crafted_keys(degree: int, encoding: RecordEncoding, record: np.ndarray, batch: BatchMaterial | None
                  ) -> dict[str, CraftedKey]:
    """Keys whose secret a client chose, with and without noise in the public key: 0, 1 and -1
    (refused, by name), the constant 2 and the sparse X (they pass the key checks)."""
    toolkit = attacker()
    secrets: dict[str, tuple[np.ndarray, str | None]] = {}
    for value in (0, 1, -1, 2):
        secret = np.zeros(degree, dtype=np.int64)
        secret[0] = value
        secrets[f"secret {value}"] = (secret, f"its secret is {value}" if value in (0, 1, -1) else None)
    secrets["sparse secret X"] = (toolkit.monomial(degree), None)
    integers = [np.rint(chunk * encoding.input_scale).astype(np.int64) for chunk in encoding.chunks(record)]
    crafted = {}
    for base, (secret, refusal) in secrets.items():
        for noise in (False, True):
            name = base + (", noise" if noise else "")
            keys = toolkit.crafted_keys(secret, noise=noise)
            if refusal is not None:
                crafted[name] = CraftedKey(name, keys, refusal)
                continue
            sparse = base.startswith("sparse")  # batches for one passing secret: 64 encryptions each
            columns = () if batch is None or not sparse else tuple(
                keys.encrypt_columns(batch.encoding, np.asarray(batch.rows)))
            crafted[name] = CraftedKey(name, keys, None, tuple(keys.encrypt_record(encoding, record)),
                                       tuple(toolkit.exact_query(keys, i, encoding.input_scale) for i in integers),
                                       columns)
    return crafted


def default_record(service, seed: int) -> np.ndarray:
    """A record within the model's input bounds, from the seed."""
    model = service.loaded.model
    return np.random.default_rng(seed).uniform(-0.9, 0.9, model.n_features) * model.input_bounds


def digits_model(directory: Path) -> Path:
    """The digits model, exported into ``directory`` (when no model is given)."""
    from client.datasets import train_digits_model
    from scoring.estimators import from_estimator
    from scoring.model import export_model

    return export_model(from_estimator(train_digits_model()), directory / "digits.model.json")
