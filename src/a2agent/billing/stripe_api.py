"""Stripe through the official `stripe` library: Checkout Sessions, charges, webhook signatures.

Only what top-ups need. Every call goes through one ``StripeClient`` on httpx (async), pointed
at Stripe's API or at ``A2AGENT_STRIPE_API_BASE`` (a stripe-mock, or the tests' scripted
Stripe). Objects come back as plain dicts in Stripe's documented shapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from stripe.params.checkout import SessionCreateParams

CENT_MICRO = 10_000  # 1 US cent in micro-USD
SIGNATURE_TOLERANCE = 300  # seconds; Stripe's documented default


class StripeUnavailable(RuntimeError):
    """Stripe could not be reached or refused the call (the caller may retry later)."""


class BadSignature(ValueError):
    """The webhook's Stripe-Signature header is missing, malformed, stale or wrong."""


class StripeApi:
    def __init__(self, secret_key: str, webhook_secret: str, api_base: str | None = None) -> None:
        import stripe

        self._stripe = stripe
        self._webhook_secret = webhook_secret
        self._http = stripe.HTTPXClient(timeout=20.0)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=self._http,
            max_network_retries=2,
        )

    # ---- webhooks ------------------------------------------------------------------------
    def verify_event(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, once its signature (HMAC-SHA256 of "{t}.{payload}" with the webhook
        secret, within the timestamp tolerance) checks out; else BadSignature."""
        try:
            self._stripe.WebhookSignature.verify_header(
                payload, signature, self._webhook_secret, SIGNATURE_TOLERANCE)
        except self._stripe.SignatureVerificationError as exc:
            raise BadSignature(str(exc).split(".")[0]) from None
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise BadSignature("the payload is not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise BadSignature("the payload is not a Stripe event")
        return event

    # ---- API calls -----------------------------------------------------------------------
    async def create_checkout_session(self, *, account_id: int, email: str, amount_cents: int,
                                      success_url: str, cancel_url: str) -> dict[str, Any]:
        metadata = {"a2agent_account_id": str(account_id), "purpose": "balance_topup"}
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [{
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": amount_cents,
                    "product_data": {"name": "A2Agent balance top-up"},
                },
            }],
            "client_reference_id": str(account_id),
            "customer_email": email,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        return await self._call(self._client.v1.checkout.sessions.create_async(params))

    async def checkout_session(self, session_id: str) -> dict[str, Any]:
        """The session as Stripe has it, with its PaymentIntent and latest charge expanded."""
        return await self._call(self._client.v1.checkout.sessions.retrieve_async(
            session_id, {"expand": ["payment_intent.latest_charge"]}))

    async def charge(self, charge_id: str) -> dict[str, Any]:
        return await self._call(self._client.v1.charges.retrieve_async(charge_id))

    async def _call(self, pending: Any) -> dict[str, Any]:
        try:
            obj = await pending
        except self._stripe.StripeError as exc:
            raise StripeUnavailable(f"Stripe: {type(exc).__name__}: {exc.user_message or exc}"
                                    ) from None
        result: dict[str, Any] = obj.to_dict()
        return result

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def card_method(charge: Any) -> str | None:
    """"visa •••• 4242" from a charge's payment_method_details (or its type alone)."""
    if not isinstance(charge, dict):
        return None
    details = charge.get("payment_method_details") or {}
    kind = details.get("type")
    card = details.get(kind) if isinstance(kind, str) else None
    if kind == "card" and isinstance(card, dict) and card.get("last4"):
        return f"{card.get('brand') or 'card'} •••• {card['last4']}"
    return str(kind) if kind else None
