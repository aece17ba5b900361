"""Unit tier: the pure parts of self-serve money — exact dollar display, month projection,
top-up amount rules, payment settings validation and Stripe's signature scheme as the
official library checks it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from a2agent.billing import spend
from a2agent.billing.payments import Payments, TopUpError
from a2agent.billing.stripe_api import BadSignature, StripeApi, card_method
from a2agent.config import ConfigError, load_settings
from a2agent.console.render import usd_full


@given(st.integers(-10**12, 10**12))
def test_usd_full_is_exact(micro: int) -> None:
    text = usd_full(micro)
    sign = -1 if text.startswith("-") else 1
    whole, frac = text.lstrip("-$").replace(",", "").split(".")
    assert len(frac) >= 2
    assert sign * (int(whole) * 1_000_000 + int(frac.ljust(6, "0"))) == micro


def test_usd_full_examples() -> None:
    assert usd_full(5_000_000) == "$5.00"
    assert usd_full(1_234) == "$0.001234"
    assert usd_full(-1_500_100) == "-$1.5001"
    assert usd_full(12_345_678_900_000) == "$12,345,678.90"


def test_month_projection_and_reset() -> None:
    i = spend.insight(3_000_000, dt.date(2026, 2, 10), limit=10_000_000)
    assert i.projected == 3_000_000 * 28 // 10 and i.limit_used_pct == 30
    assert i.resets_on == dt.date(2026, 3, 1)
    assert spend.next_month(dt.date(2026, 12, 31)) == dt.date(2027, 1, 1)
    assert spend.insight(0, dt.date(2026, 1, 1), None).limit_used_pct is None


def _settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(environ={"A2AGENT_SECRET_KEY": "x" * 32, **env}, materialize=False)


def test_payment_settings_are_validated() -> None:
    assert not _settings().payments_enabled
    on = _settings(A2AGENT_STRIPE_SECRET_KEY="sk_test_1", A2AGENT_STRIPE_WEBHOOK_SECRET="whsec_1")
    assert on.payments_enabled and on.topup_presets == [5.0, 10.0, 25.0, 50.0]
    bad = {
        "A2AGENT_STRIPE_WEBHOOK_SECRET": {"A2AGENT_STRIPE_SECRET_KEY": "sk_test_1"},
        "A2AGENT_TOPUP_MIN_USD": {"A2AGENT_TOPUP_MIN_USD": "0.2"},
        "A2AGENT_TOPUP_MAX_USD": {"A2AGENT_TOPUP_MAX_USD": "1"},
        "A2AGENT_TOPUP_PRESETS_USD": {"A2AGENT_TOPUP_PRESETS_USD": "5,ten"},
        "A2AGENT_SIGNUP_CREDIT_USD": {"A2AGENT_SIGNUP_CREDIT_USD": "-1"},
        "A2AGENT_STRIPE_API_BASE": {"A2AGENT_STRIPE_API_BASE": "ftp://x"},
    }
    for name, env in bad.items():
        with pytest.raises(ConfigError, match=name):
            _settings(**env)
    with pytest.raises(ConfigError, match="A2AGENT_TOPUP_PRESETS_USD"):
        _settings(A2AGENT_TOPUP_PRESETS_USD="2000")  # above the maximum


def test_top_up_amount_rules() -> None:
    payments = Payments(_settings(A2AGENT_TOPUP_MIN_USD="5", A2AGENT_TOPUP_MAX_USD="100"),
                        db=None)  # type: ignore[arg-type]
    assert payments.check_amount(12_340_000) == 1234
    for micro in (4_990_000, 100_010_000, 12_345_000):
        with pytest.raises(TopUpError):
            payments.check_amount(micro)


def test_signature_scheme() -> None:
    api = StripeApi("sk_test_1", "whsec_unit")
    payload = b'{"id":"evt_1","object":"event","type":"x.y","data":{"object":{"id":"o"}}}'
    t = int(time.time())

    def mac(at: int, secret: bytes = b"whsec_unit") -> str:
        return hmac.new(secret, f"{at}.".encode() + payload, hashlib.sha256).hexdigest()

    assert api.verify_event(payload, f"t={t},v1={mac(t)}")["type"] == "x.y"
    assert api.verify_event(payload, f"t={t - 290},v1={mac(t - 290)}")["type"] == "x.y"
    for header in (None, "", f"t={t}", f"t={t},v1={'0' * 64}", f"t={t - 400},v1={mac(t - 400)}",
                   f"t={t + 1},v1={mac(t)}", f"t={t},v1={mac(t, b'whsec_other')}",
                   f"t={t},v0={mac(t)}"):
        with pytest.raises(BadSignature):
            api.verify_event(payload, header)


def test_card_method() -> None:
    charge = {"payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}}}
    assert card_method(charge) == "visa •••• 4242"
    assert card_method({"payment_method_details": {"type": "us_bank_account"}}) == \
        "us_bank_account"
    assert card_method("ch_123") is None
