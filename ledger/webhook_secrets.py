"""Webhook secrets at rest: encrypted in the database with a key that lives in a file.

The worker must sign with the very secret the member was shown, so the secret cannot be
stored as a hash. It is stored encrypted instead, with Fernet (AES-128-CBC and HMAC-SHA256,
from ``cryptography``) under a key kept in ``FILIERA_WEBHOOK_KEY_FILE`` (default
``<data dir>/webhook-secrets.key``, mode 0600, created on first use): a copy of the database
alone (a backup, a replica, a dump handed to support) reveals no secret. Each token also
authenticates the subscription id it belongs to, so a sealed secret copied onto another
subscription's row does not decrypt there.

The API servers and ``filiera worker`` must read the same key file; keep it with the ledger
key and back it up with it (docs/webhooks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .errors import InvalidKeyFile, WebhookSecretUnreadable
from .keys import read_secret_file, write_secret_file

__all__ = ["SecretBox"]


class SecretBox:
    """Seal and open webhook secrets with the key of one key file."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        # A separate subkey binds each token to its subscription (see _bound).
        self._bind_key = hashlib.sha256(b"filiera/webhook-secret-binding/v1\n" + key).digest()

    @classmethod
    def open(cls, path: Path) -> SecretBox:
        """The box of the key in ``path``, which is created (0600) if it does not exist yet.

        Two processes creating it at once agree: the file is created exclusively, and the one
        that loses reads the winner's key. Raises UnsafeKeyFile (readable by others) or
        InvalidKeyFile (unreadable or not a Fernet key)."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole under a temporary name, then linked into place: link() fails if the
            # name exists, so a process racing to create it never reads a half-written file.
            scratch = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
            write_secret_file(scratch, Fernet.generate_key() + b"\n")
            try:
                os.link(scratch, path)
            except FileExistsError:
                pass
            except OSError as exc:
                raise InvalidKeyFile(f"cannot create {path}: {exc.strerror}", path=str(path)) from exc
            finally:
                scratch.unlink(missing_ok=True)
        text = read_secret_file(path).strip()
        try:
            return cls(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise InvalidKeyFile(
                f"{path} is not a webhook secrets key (32 bytes of url-safe base64); restore it from "
                "the backup, or move it away to start afresh (registered webhooks then need new secrets)",
                path=str(path),
            ) from exc

    def _bound(self, subscription: str, secret: str) -> bytes:
        tag = hmac.new(self._bind_key, subscription.encode("utf-8"), hashlib.sha256).digest()[:16]
        return base64.b64encode(tag) + b" " + secret.encode("utf-8")

    def seal(self, subscription: str, secret: str) -> str:
        """The secret encrypted for storage in ``subscription``'s row."""
        return self._fernet.encrypt(self._bound(subscription, secret)).decode("ascii")

    def unseal(self, subscription: str, sealed: str) -> str:
        """The secret of ``subscription``. Raises WebhookSecretUnreadable if the token was made
        with another key, altered, or belongs to another subscription."""
        try:
            plain = self._fernet.decrypt(sealed.encode("ascii"))
        except (InvalidToken, ValueError, UnicodeEncodeError) as exc:
            raise WebhookSecretUnreadable(
                f"the secret of webhook {subscription} does not decrypt with this key file",
                subscription=subscription,
            ) from exc
        tag, _, secret = plain.partition(b" ")
        expected = self._bound(subscription, "").split(b" ", 1)[0]
        if not hmac.compare_digest(tag, expected):
            raise WebhookSecretUnreadable(
                f"the secret stored for webhook {subscription} belongs to another subscription",
                subscription=subscription,
            )
        return secret.decode("utf-8")

