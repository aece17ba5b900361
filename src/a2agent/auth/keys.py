"""API key format and keyed hashing. The server keeps only HMAC digests of keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_PREFIX = "sk-a2a-"
KEY_RANDOM_CHARS = 40  # base62: 40 * log2(62) ≈ 238 bits
_ALPHABET = string.ascii_letters + string.digits
_ALPHABET_SET = frozenset(_ALPHABET)
CODE_PREFIX = "A2A-"


def generate_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_RANDOM_CHARS))


def looks_like_key(value: str) -> bool:
    """Cheap syntactic check before any lookup (a malformed key is a 401 without I/O)."""
    if not value.startswith(KEY_PREFIX):
        return False
    body = value[len(KEY_PREFIX) :]
    return 32 <= len(body) <= 128 and all(c in _ALPHABET_SET for c in body)


class KeyHasher:
    """HMAC-SHA-256 with the server secret as pepper. Digests are what the database indexes."""

    def __init__(self, secret: str) -> None:
        self._secret = hashlib.sha256(("a2agent-key-v1:" + secret).encode()).digest()

    def digest(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def same(a: str, b: str) -> bool:
        return hmac.compare_digest(a, b)


def display_parts(key: str) -> tuple[str, str]:
    """(display prefix, last four) — e.g. ("sk-a2a-AbCd", "wxyz")."""
    return key[: len(KEY_PREFIX) + 4], key[-4:]


def mask(prefix: str, last4: str) -> str:
    return f"{prefix}…{last4}"


def generate_code() -> str:
    body = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20))
    return CODE_PREFIX + "-".join(body[i : i + 5] for i in range(0, 20, 5))


def normalize_code(code: str) -> str:
    return code.strip().upper()
