"""Channel credentials at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA-256, from the
``cryptography`` package) under a key derived from the server secret with HKDF-SHA-256.

A sealed value is ``enc:v1:<token>``. Anything else is a credential stored before sealing
existed: it is still read as is, and ``Catalog.seal_credentials`` rewrites it sealed.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"


class SealError(ValueError):
    """A sealed value that this secret key cannot open (the secret key changed)."""


class CredentialBox:
    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"a2agent",
                   info=b"channel-credentials v1").derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    @staticmethod
    def is_sealed(value: str | None) -> bool:
        return bool(value) and str(value).startswith(PREFIX)

    def seal(self, plain: str | None) -> str | None:
        if not plain or self.is_sealed(plain):
            return plain
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        if not stored or not self.is_sealed(stored):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SealError("a channel credential cannot be decrypted: was A2AGENT_SECRET_KEY changed? "
                            "Set the channel's key again.") from None
