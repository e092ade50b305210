"""Ed25519 keys against public vectors (PROTOCOL §2) and key files (§8).

Vectors: tests/vectors/ed25519-rfc8032 (see its README for sources and licences).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import (
    InvalidKey,
    InvalidKeyFile,
    InvalidSignature,
    InvalidSignatureEncoding,
    UnsafeKeyFile,
    WeakKey,
)
from ledger.keys import (
    KeyFile,
    PublicKey,
    SigningKey,
    key_id,
    read_key_file,
    signing_key_from_env,
    unsafe_verify,
    write_key_file,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "ed25519-rfc8032"

# The order of the prime-order subgroup (RFC 8032 §5.1).
L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes([1]) + bytes(31)


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


RFC8032 = _load("rfc8032.json")["cases"]
SIGN_INPUT = (VECTORS / "sign.input.odd-lines.txt").read_text(encoding="ascii").splitlines()
WYCHEPROOF = _load("wycheproof_ed25519_test.json")
WYCHEPROOF_TESTS = [
    (group["publicKey"]["pk"], test) for group in WYCHEPROOF["testGroups"] for test in group["tests"]
]
CCTV = _load("cctv_ed25519vectors.json")


def test_vector_counts() -> None:
    assert len(RFC8032) == 3
    assert len(SIGN_INPUT) == 512
    assert WYCHEPROOF["numberOfTests"] == 75
    assert len(WYCHEPROOF_TESTS) == 75
    assert len(CCTV) == 457


# --- signing: RFC 8032 §7.1 and DJB's sign.input --------------------------------------------


@pytest.mark.parametrize("case", RFC8032, ids=[c["name"] for c in RFC8032])
def test_rfc8032(case: dict[str, Any]) -> None:
    key = SigningKey(bytes.fromhex(case["secret_key_hex"]))
    message = bytes.fromhex(case["message_hex"])
    assert len(message) == case["message_length"]
    assert key.public_key.raw.hex() == case["public_key_hex"]
    assert key.unsafe_sign(message).hex() == case["signature_hex"]
    unsafe_verify(key.public_key.raw, message, bytes.fromhex(case["signature_hex"]))


@pytest.mark.parametrize("line", SIGN_INPUT, ids=[f"line-{2 * i + 1}" for i in range(512)])
def test_sign_input(line: str) -> None:
    fields = line.split(":")
    assert len(fields) == 5 and fields[4] == ""
    secret, public, message, signed = (bytes.fromhex(f) for f in fields[:4])
    key = SigningKey(secret[:32])
    assert key.public_key.raw == public == secret[32:]
    signature = key.unsafe_sign(message)
    assert signature + message == signed
    unsafe_verify(public, message, signature)


# --- verification: Wycheproof ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("public_hex", "test"), WYCHEPROOF_TESTS, ids=[f"tc{t['tcId']}" for _, t in WYCHEPROOF_TESTS]
)
def test_wycheproof(public_hex: str, test: dict[str, Any]) -> None:
    public = bytes.fromhex(public_hex)
    message = bytes.fromhex(test["msg"])
    signature = bytes.fromhex(test["sig"])
    if test["result"] == "valid":
        unsafe_verify(public, message, signature)
        return
    # libsodium agrees with every Wycheproof verdict (75/75); nothing to document.
    expected = InvalidSignature if len(signature) == 64 else InvalidSignatureEncoding
    with pytest.raises(expected) as caught:
        unsafe_verify(public, message, signature)
    assert caught.value.code == expected.code


# --- verification policy: C2SP CCTV edge cases ------------------------------------------------
#
# Upstream flag meanings (C2SP/CCTV ed25519/README.md): low_order_A / low_order_R: the point has
# small order; low_order_component_A/_R: the point has a non-zero small-order component (not in
# the prime-order subgroup); low_order_residue: the signature only holds with the cofactored
# equation [8][S]B = [8]R + [8][k]A; non_canonical_A/_R: the encoding has y >= p or a sign bit
# on x = 0; reencoded_k: k was computed over the re-encoded (canonical) A and R.
#
# libsodium's crypto_sign_verify_detached (no ED25519_COMPAT) refuses, each independently:
LIBSODIUM_REFUSES = {
    "low_order_R": "ge25519_has_small_order(R): R is on the small-order blocklist",
    "low_order_A": "ge25519_has_small_order(A): A is on the small-order blocklist",
    "non_canonical_A": "ge25519_is_canonical(A) fails",
    "non_canonical_R": "R is compared by its canonical re-encoding, so another spelling fails",
    "low_order_residue": "the equation is cofactorless: R == [S]B - [k]A exactly",
}
# ... and tolerates the rest: a mixed-order A (low_order_component_A) is accepted by
# verification, which is why PublicKey registration adds the prime-order-subgroup check.
LIBSODIUM_TOLERATES = {"low_order_component_A", "low_order_component_R", "reencoded_k"}
# The rule above, pinned by vector number as observed with PyNaCl 1.6 / libsodium: exactly these
# 7 of 457 verify, all flagged only low_order_component_A.
CCTV_ACCEPTED = {50, 182, 438, 538, 638, 738, 832}


def _cctv_flags(vector: dict[str, Any]) -> set[str]:
    return set(vector["flags"] or [])


def _libsodium_rule(flags: set[str]) -> bool:
    assert flags <= set(LIBSODIUM_REFUSES) | LIBSODIUM_TOLERATES, flags
    return not flags & set(LIBSODIUM_REFUSES)


def _openssl_rule(flags: set[str]) -> bool:
    # From the vectors README: pyca/cryptography (OpenSSL) accepts iff neither flag is present.
    return not flags & {"non_canonical_R", "low_order_residue"}


def _verifies(vector: dict[str, Any]) -> bool:
    try:
        unsafe_verify(
            bytes.fromhex(vector["key"]), vector["msg"].encode("ascii"), bytes.fromhex(vector["sig"])
        )
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize("vector", CCTV, ids=[f"cctv-{v['number']}" for v in CCTV])
def test_cctv_policy(vector: dict[str, Any]) -> None:
    expected = _libsodium_rule(_cctv_flags(vector))
    assert expected == (vector["number"] in CCTV_ACCEPTED)
    assert _verifies(vector) is expected


def test_cctv_policy_summary() -> None:
    accepted = {v["number"] for v in CCTV if _verifies(v)}
    assert accepted == CCTV_ACCEPTED
    assert {frozenset(_cctv_flags(v)) for v in CCTV if v["number"] in accepted} == {
        frozenset({"low_order_component_A"})
    }
    # Why `cryptography` must not decide (PROTOCOL §2): OpenSSL accepts a strict superset.
    openssl = {v["number"] for v in CCTV if _openssl_rule(_cctv_flags(v))}
    assert accepted < openssl
    assert len(openssl - accepted) == 38


# --- registration: PublicKey ----------------------------------------------------------------


def _small_order_points() -> list[bytes]:
    # The canonical encodings of the 8 points of order dividing 8 (the torsion subgroup).
    return [
        bytes.fromhex(h)
        for h in (
            "0100000000000000000000000000000000000000000000000000000000000000",  # order 1
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
            "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
            "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        )
    ]


def _times8(point: bytes) -> bytes:
    for _ in range(3):
        point = nacl.bindings.crypto_core_ed25519_add(point, point)
    return point


def test_small_order_points_are_the_torsion_subgroup() -> None:
    points = _small_order_points()
    assert len(set(points)) == 8
    # The list is checked, not trusted: [8]P is the identity for each.
    assert all(_times8(p) == IDENTITY for p in points)


@pytest.mark.parametrize("point", _small_order_points(), ids=[f"torsion-{i}" for i in range(8)])
def test_small_order_keys_refused(point: bytes) -> None:
    with pytest.raises(WeakKey) as caught:
        PublicKey(point)
    assert caught.value.code == "weak_key"


CCTV_WEAK_KEYS = sorted(
    {
        v["key"]
        for v in CCTV
        if _cctv_flags(v) & {"low_order_A", "non_canonical_A", "low_order_component_A"}
    }
)
CCTV_GOOD_KEYS = sorted(
    {v["key"] for v in CCTV if not {f for f in _cctv_flags(v) if f.endswith("_A")}}
)


def test_cctv_key_sets() -> None:
    # Every key flagged low-order, non-canonical or mixed-order is in the weak set; a key is
    # never in both sets (flags on A depend only on the key).
    assert CCTV_WEAK_KEYS and CCTV_GOOD_KEYS
    assert not set(CCTV_WEAK_KEYS) & set(CCTV_GOOD_KEYS)


@pytest.mark.parametrize("key_hex", CCTV_WEAK_KEYS)
def test_cctv_weak_keys_refused(key_hex: str) -> None:
    with pytest.raises(WeakKey):
        PublicKey(bytes.fromhex(key_hex))
    with pytest.raises(WeakKey):
        PublicKey.from_b64(_b64(bytes.fromhex(key_hex)), field="k")


@pytest.mark.parametrize("key_hex", CCTV_GOOD_KEYS)
def test_cctv_prime_order_keys_registrable(key_hex: str) -> None:
    assert PublicKey(bytes.fromhex(key_hex)).raw.hex() == key_hex


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@pytest.mark.parametrize(
    "raw",
    [
        # y = p + 1 and y = p (non-canonical spellings of the identity and an order-4 point),
        # and x = 0 with the sign bit set ("negative zero") for y = 1 and y = -1.
        bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000080"),
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    ],
    ids=["y=p+1", "y=p", "identity-negative-zero", "minus-one-negative-zero"],
)
def test_non_canonical_keys_refused(raw: bytes) -> None:
    with pytest.raises(WeakKey):
        PublicKey(raw)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_length_keys_refused(size: int) -> None:
    good = SigningKey(bytes(32)).public_key.raw
    raw = (good * 3)[:size]
    with pytest.raises(InvalidKey) as caught:
        PublicKey(raw)
    assert caught.value.code == "invalid_key"
    with pytest.raises(InvalidKey) as caught:
        PublicKey.from_b64(_b64(raw), field="public_key")
    assert caught.value.facts["field"] == "public_key"


TEST1_B64 = base64.b64encode(
    bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
).decode("ascii")
BAD_SPELLINGS = {
    "alphabet": "not base64!",
    "no-padding": TEST1_B64.rstrip("="),
    "url-safe": TEST1_B64.replace("/", "_").replace("+", "-"),
    "whitespace": " " + TEST1_B64,
    # The last character before '=' carries 2 unused bits; setting one is a second spelling.
    "trailing-bits": TEST1_B64[:-2] + chr(ord(TEST1_B64[-2]) + 1) + "=",
}


@pytest.mark.parametrize("name", sorted(BAD_SPELLINGS))
def test_from_b64_strict(name: str) -> None:
    assert TEST1_B64.endswith("=") and ("/" in TEST1_B64 or "+" in TEST1_B64)
    assert PublicKey.from_b64(TEST1_B64, field="k").raw.hex() == TEST1["public_key_hex"]
    text = BAD_SPELLINGS[name]
    assert text != TEST1_B64
    with pytest.raises(InvalidKey) as caught:
        PublicKey.from_b64(text, field="keys[0].public_key")
    assert caught.value.facts["field"] == "keys[0].public_key"


def test_from_b64_not_a_string() -> None:
    with pytest.raises(InvalidKey):
        PublicKey.from_b64(b"11qYAYKxCrfVS/7TyWQHOg7hcvPaoiMlrwIaaPcHURo=", field="k")


def test_key_id() -> None:
    raw = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    public = PublicKey(raw)
    assert public.key_id == key_id(raw)
    assert len(public.key_id) == 16
    assert public.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert PublicKey.from_b64(public.b64, field="k") == public


@given(st.binary(min_size=32, max_size=32))
def test_generated_keys_always_registrable(seed: bytes) -> None:
    # RFC 8032 §5.1.5: A = [s]B lies in the prime-order subgroup, so registration never refuses
    # an honest key despite being stricter than "not small order".
    key = SigningKey(seed)
    assert PublicKey(key.public_key.raw) == key.public_key
    signature = key.unsafe_sign(b"filiera")
    unsafe_verify(key.public_key.raw, b"filiera", signature)


# --- malleability and encodings (TESTPLAN T4) ------------------------------------------------

TEST1 = RFC8032[0]
TEST1_KEY = bytes.fromhex(TEST1["public_key_hex"])
TEST1_MSG = bytes.fromhex(TEST1["message_hex"])
TEST1_SIG = bytes.fromhex(TEST1["signature_hex"])


def test_s_plus_l_refused() -> None:
    s = int.from_bytes(TEST1_SIG[32:], "little") + L
    assert s < 2**256
    with pytest.raises(InvalidSignature) as caught:
        unsafe_verify(TEST1_KEY, TEST1_MSG, TEST1_SIG[:32] + s.to_bytes(32, "little"))
    assert caught.value.code == "invalid_signature"


def test_s_equal_l_refused() -> None:
    with pytest.raises(InvalidSignature):
        unsafe_verify(TEST1_KEY, TEST1_MSG, TEST1_SIG[:32] + L.to_bytes(32, "little"))


@pytest.mark.parametrize("size", [0, 63, 65, 128])
def test_wrong_length_signature_refused(size: int) -> None:
    signature = (TEST1_SIG * 3)[:size]
    with pytest.raises(InvalidSignatureEncoding) as caught:
        unsafe_verify(TEST1_KEY, TEST1_MSG, signature)
    assert caught.value.code == "invalid_signature_encoding"


@pytest.mark.parametrize("size", [31, 33])
def test_wrong_length_key_refused_by_verify(size: int) -> None:
    with pytest.raises(InvalidKey):
        unsafe_verify((TEST1_KEY * 2)[:size], TEST1_MSG, TEST1_SIG)


def test_identity_key_with_zero_signature_refused() -> None:
    # Under a permissive verifier, A = identity, R = identity, S = 0 verifies every message.
    with pytest.raises(InvalidSignature):
        unsafe_verify(IDENTITY, b"anything", IDENTITY + bytes(32))
    with pytest.raises(InvalidSignature):
        unsafe_verify(IDENTITY, b"anything", bytes(64))
    with pytest.raises(WeakKey):
        PublicKey(IDENTITY)


def test_flipped_bits_refused() -> None:
    for position in range(64):
        tampered = bytearray(TEST1_SIG)
        tampered[position] ^= 0x01
        with pytest.raises(InvalidSignature):
            unsafe_verify(TEST1_KEY, TEST1_MSG, bytes(tampered))


# --- signing keys ----------------------------------------------------------------------------


def test_seed_length() -> None:
    for size in (0, 31, 33, 64):
        with pytest.raises(InvalidKey):
            SigningKey(bytes(size))


def test_repr_hides_seed() -> None:
    key = SigningKey(bytes.fromhex(TEST1["secret_key_hex"]))
    seed_hex = TEST1["secret_key_hex"]
    for text in (repr(key), str(key), repr(KeyFile(participant="ledger", signing_key=key))):
        assert seed_hex not in text
        assert _b64(key.seed) not in text
        assert str(key.seed) not in text
        assert key.public_key.key_id in text


def test_generate_is_random() -> None:
    assert SigningKey.generate().seed != SigningKey.generate().seed


def test_signing_key_immutable() -> None:
    key = SigningKey.generate()
    with pytest.raises(AttributeError):
        key.seed = bytes(32)  # type: ignore[misc]
    assert key == SigningKey(key.seed)


# --- key files (PROTOCOL §8) -----------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Any:
    # A umask of 0 would make a plain open() world-readable; the writer must not rely on it.
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_key_file_round_trip(tmp_path: Path, permissive_umask: None) -> None:
    key = SigningKey.generate()
    path = tmp_path / "ledger.key"
    write_key_file(path, participant="ledger", signing_key=key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = read_key_file(path)
    assert loaded.participant == "ledger"
    assert loaded.signing_key == key
    assert loaded.key_id == key.public_key.key_id
    assert loaded.public_key == key.public_key
    document = json.loads(path.read_text())
    assert set(document) == {"participant", "key_id", "public_key", "private_key"}
    assert document["key_id"] == key.public_key.key_id
    assert document["public_key"] == key.public_key.b64
    assert document["private_key"] == _b64(key.seed)


def test_key_file_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    first, second = SigningKey.generate(), SigningKey.generate()
    write_key_file(path, participant="admin", signing_key=first)
    with pytest.raises(InvalidKeyFile) as caught:
        write_key_file(path, participant="admin", signing_key=second)
    assert caught.value.code == "invalid_key_file"
    assert read_key_file(path).signing_key == first


def test_key_file_overwrite(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "a.key"
    path.write_text("old")
    path.chmod(0o644)
    key = SigningKey.generate()
    write_key_file(path, participant="admin", signing_key=key, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).signing_key == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key"]


def test_key_file_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "a.key"
    link.symlink_to(target)
    with pytest.raises(InvalidKeyFile):
        write_key_file(link, participant="admin", signing_key=SigningKey.generate())
    assert not target.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o610])
def test_key_file_unsafe_mode(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "a.key"
    write_key_file(path, participant="admin", signing_key=SigningKey.generate())
    path.chmod(mode)
    with pytest.raises(UnsafeKeyFile) as caught:
        read_key_file(path)
    assert caught.value.code == "unsafe_key_file"
    assert f"chmod 600 {path}" in caught.value.detail


def test_key_file_stricter_mode_ok(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    write_key_file(path, participant="admin", signing_key=SigningKey.generate())
    path.chmod(0o400)
    read_key_file(path)


def _tampered(tmp_path: Path, change: Any) -> Path:
    key = SigningKey.generate()
    document = json.loads(KeyFile(participant="admin", signing_key=key).to_json())
    text = change(document)
    path = tmp_path / "t.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text if isinstance(text, str) else json.dumps(document))
    return path


OTHER = SigningKey(bytes(range(32)))
TAMPERINGS: dict[str, Any] = {
    "key-id-of-other-key": lambda d: d.update(key_id=OTHER.public_key.key_id),
    "key-id-uppercase": lambda d: d.update(key_id=d["key_id"].upper()),
    "public-key-of-other-key": lambda d: d.update(public_key=OTHER.public_key.b64),
    "private-key-31-bytes": lambda d: d.update(private_key=_b64(bytes(31))),
    "private-key-not-base64": lambda d: d.update(private_key="***"),
    "participant-invalid": lambda d: d.update(participant="Admin!"),
    "participant-number": lambda d: d.update(participant=7),
    "missing-field": lambda d: d.pop("key_id") and None,
    "extra-field": lambda d: d.update(comment="hi"),
    "not-json": lambda d: "{not json",
    "not-an-object": lambda d: "[]",
    "duplicate-member": lambda d: '{"participant": "admin", "participant": "admin"}',
    "empty": lambda d: "",
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_key_file_tampered(tmp_path: Path, name: str) -> None:
    path = _tampered(tmp_path, TAMPERINGS[name])
    with pytest.raises(InvalidKeyFile) as caught:
        read_key_file(path)
    assert caught.value.code == "invalid_key_file"


def test_key_file_errors_never_show_the_seed(tmp_path: Path) -> None:
    key = SigningKey.generate()
    text = KeyFile(participant="admin", signing_key=key).to_json()
    text = text.replace(key.public_key.key_id, OTHER.public_key.key_id)
    with pytest.raises(InvalidKeyFile) as caught:
        signing_key_from_env(text)
    assert _b64(key.seed) not in str(caught.value)
    assert _b64(key.seed) not in repr(caught.value.facts)


def test_key_file_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyFile):
        read_key_file(tmp_path / "missing.key")
    directory = tmp_path / "dir.key"
    directory.mkdir(mode=0o700)
    with pytest.raises(InvalidKeyFile):
        read_key_file(directory)


def test_key_file_too_large(tmp_path: Path) -> None:
    path = _tampered(tmp_path, lambda d: " " * 5000 + json.dumps(d))
    with pytest.raises(InvalidKeyFile):
        read_key_file(path)


def test_signing_key_from_env() -> None:
    key = SigningKey.generate()
    text = KeyFile(participant="ledger", signing_key=key).to_json()
    assert signing_key_from_env(text) == key
    with pytest.raises(InvalidKeyFile):
        signing_key_from_env(_b64(key.seed))
    with pytest.raises(InvalidKeyFile):
        signing_key_from_env(text.replace('"ledger"', '"ledger", "x": 1'))


def test_key_file_fifo_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(InvalidKeyFile):
        read_key_file(fifo)


def test_signing_key_equality_and_hash() -> None:
    seed = bytes(range(32))
    assert SigningKey(seed) == SigningKey(seed)
    assert hash(SigningKey(seed)) == hash(SigningKey(seed))
    assert SigningKey(seed) != SigningKey(bytes(32))
    assert SigningKey(seed) != seed
