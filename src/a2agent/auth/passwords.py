"""argon2id password hashing (argon2-cffi defaults are argon2id)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        _hasher.hash(password)  # spend the same time whether or not the account exists
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str) -> str | None:
    """A reason the password is unacceptable, or None."""
    if len(password) < 8:
        return "Password must be at least 8 characters."
    if len(password) > 256:
        return "Password must be at most 256 characters."
    return None
