"""Unit tier: key format, keyed hashing and display parts."""

from __future__ import annotations

from a2agent.auth.keys import (
    KEY_PREFIX,
    KeyHasher,
    display_parts,
    generate_code,
    generate_key,
    looks_like_key,
    mask,
    normalize_code,
)


def test_generated_keys_look_like_keys_and_are_unique() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(looks_like_key(k) and k.startswith(KEY_PREFIX) for k in keys)


def test_malformed_keys_are_refused_without_lookup() -> None:
    for bad in ["", "sk-a2a-", "sk-a2a-short", "sk-other-" + "a" * 40, "sk-a2a-" + "a" * 39 + "!",
                "sk-a2a-" + "a" * 129]:
        assert not looks_like_key(bad), bad


def test_hmac_digest_depends_on_the_server_secret() -> None:
    key = generate_key()
    a, b = KeyHasher("one"), KeyHasher("two")
    assert a.digest(key) == a.digest(key)
    assert a.digest(key) != b.digest(key)
    assert key not in a.digest(key) and len(a.digest(key)) == 64
    assert KeyHasher.same(a.digest(key), a.digest(key))


def test_display_parts_show_only_prefix_and_last_four() -> None:
    key = generate_key()
    prefix, last4 = display_parts(key)
    assert prefix == key[:11] and last4 == key[-4:]
    assert mask(prefix, last4) == f"{key[:11]}…{key[-4:]}"


def test_codes_are_normalised() -> None:
    code = generate_code()
    assert normalize_code(f"  {code.lower()} ") == code
