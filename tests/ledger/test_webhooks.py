"""The pure part of webhooks (ledger/webhooks.py, ledger/webhook_secrets.py): signatures
agree with the Standard Webhooks reference library, the retry schedule's properties, URL
checks, and sealed secrets that do not open elsewhere.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from ledger.errors import InvalidKeyFile, UnsafeKeyFile, WebhookSecretUnreadable, WebhookUrlRefused
from ledger.webhook_secrets import SecretBox
from ledger.webhooks import check_url, message_body, message_id, new_secret, public_address, retry_delay, signature

_ID = st.from_regex(r"msg_[A-Za-z0-9_]{1,40}", fullmatch=True)


@given(secret_bytes=st.binary(min_size=24, max_size=64), msg_id=_ID, stamp=st.integers(0, 2**33), body=st.text(max_size=300))
def test_signatures_match_the_reference_library(secret_bytes: bytes, msg_id: str, stamp: int, body: str) -> None:
    secret = "whsec_" + base64.b64encode(secret_bytes).decode()
    ours = signature(secret, msg_id, stamp, body.encode())
    theirs = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, timezone.utc), body)
    assert ours == theirs


def test_a_signature_changes_with_every_signed_part() -> None:
    secret = new_secret()
    base = signature(secret, "msg_a", 1700000000, b"{}")
    assert signature(secret, "msg_b", 1700000000, b"{}") != base
    assert signature(secret, "msg_a", 1700000001, b"{}") != base
    assert signature(secret, "msg_a", 1700000000, b"{ }") != base
    assert signature(new_secret(), "msg_a", 1700000000, b"{}") != base


def test_new_secrets_are_standard_and_distinct() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for s in secrets:
        assert s.startswith("whsec_") and len(base64.b64decode(s[6:], validate=True)) == 32


@given(sub=st.from_regex(r"wh_[0-9a-f]{24}", fullmatch=True), index=st.integers(0, 2**53), seq=st.integers(0, 10**6))
def test_message_ids_have_no_dot_and_are_one_per_fact(sub: str, index: int, seq: int) -> None:
    mid = message_id(sub, index, seq)
    assert "." not in mid and mid.startswith("msg_")
    assert mid != message_id(sub, index, seq + 1) and mid != message_id(sub, index + 1, seq)


def test_the_body_is_compact_utf8_json_with_type_timestamp_and_data() -> None:
    body = message_body({"kind": "shipment", "cursor": "5.0", "region": "IT/Puglia – Bari"}, sealed_at="2026-11-25T09:12:04Z")
    assert body == '{"type":"fact.shipment","timestamp":"2026-11-25T09:12:04Z","data":{"kind":"shipment","cursor":"5.0","region":"IT/Puglia – Bari"}}'.encode()


@given(n=st.integers(1, 200), base=st.floats(0.01, 60), cap=st.floats(1, 86400), j1=st.floats(0, 0.999), j2=st.floats(0, 0.999))
def test_retry_pauses_never_shrink_and_never_pass_the_cap(n: int, base: float, cap: float, j1: float, j2: float) -> None:
    this, following = retry_delay(n, base=base, cap=cap, jitter=j1), retry_delay(n + 1, base=base, cap=cap, jitter=j2)
    assert 0 < this <= cap and following <= cap
    full = min(cap, base * 2 ** min(n - 1, 62))
    assert full / 2 <= this <= full
    if base * 2 ** min(n, 62) <= cap:
        # Below the cap, equal jitter's ranges only touch: a pause never shrinks.
        assert following >= this or following == pytest.approx(this)


def test_retry_counts_from_one() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, base=1, cap=10, jitter=0)


@given(st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "fc00::/7", "fe80::/10", "::1/128", "224.0.0.0/4"]), st.integers(0, 2**32 - 1))
def test_non_public_addresses_are_refused(network: str, offset: int) -> None:
    net = ipaddress.ip_network(network)
    address = str(net[offset % net.num_addresses])
    assert not public_address(address)
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(WebhookUrlRefused):
        check_url(f"https://{host}/hook", allow_private=False, resolve=None)
    assert check_url(f"https://{host}/hook", allow_private=True, resolve=None).host == address


def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    def resolve(host: str, port: int) -> list[str]:
        return {"erp.example.com": ["93.184.215.14"], "sneaky.example.com": ["93.184.215.14", "10.1.2.3"]}[host]

    assert check_url("https://erp.example.com:8443/in?x=1", allow_private=False, resolve=resolve).target == "/in?x=1"
    with pytest.raises(WebhookUrlRefused):
        check_url("https://sneaky.example.com/", allow_private=False, resolve=resolve)


def test_sealed_secrets_open_only_for_their_subscription_and_key(tmp_path: Path) -> None:
    box = SecretBox.open(tmp_path / "k.key")
    assert stat.S_IMODE(os.stat(tmp_path / "k.key").st_mode) == 0o600
    secret = new_secret()
    sealed = box.seal("wh_1", secret)
    assert secret not in sealed and secret[6:] not in sealed
    assert SecretBox.open(tmp_path / "k.key").unseal("wh_1", sealed) == secret
    with pytest.raises(WebhookSecretUnreadable):
        box.unseal("wh_2", sealed)  # copied onto another subscription's row
    with pytest.raises(WebhookSecretUnreadable):
        SecretBox.open(tmp_path / "other.key").unseal("wh_1", sealed)
    with pytest.raises(WebhookSecretUnreadable):
        box.unseal("wh_1", sealed[:-4] + "AAAA")


def test_the_key_file_must_be_private_and_well_formed(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    SecretBox.open(path)
    os.chmod(path, 0o644)
    with pytest.raises(UnsafeKeyFile):
        SecretBox.open(path)
    os.chmod(path, 0o600)
    path.write_text("not a key\n")
    with pytest.raises(InvalidKeyFile):
        SecretBox.open(path)
