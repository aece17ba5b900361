"""A scripted Stripe on loopback: the parts of the API that Checkout top-ups use, a hosted
"Checkout" page, and webhook deliveries signed the way Stripe signs them.

Objects follow Stripe's documented shapes (checkout.session, payment_intent, charge, refund,
event). The gateway's official `stripe` library talks to it over real HTTP
(``A2AGENT_STRIPE_API_BASE``). Signatures are computed here independently of that library:
``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.gateway import free_port

SECRET_KEY = "sk_test_" + "a2agentscripted" * 2
WEBHOOK_SECRET = "whsec_" + "scriptedwebhooksecret0123"


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (a[b][0][c]=v) back into dicts; list indexes stay dict keys."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


class ScriptedStripe:
    def __init__(self, webhook_url: str | None = None, secret_key: str = SECRET_KEY,
                 webhook_secret: str = WEBHOOK_SECRET) -> None:
        self.port = free_port()
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.sessions: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (method, path) of API calls
        self.deliveries: list[tuple[str, int]] = []  # (event type, gateway status)
        self.available = True  # False: the API answers 500 (Stripe having trouble)
        app = Starlette(routes=[
            Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
            Route("/v1/checkout/sessions/{sid}", self._get_session, methods=["GET"]),
            Route("/v1/charges/{cid}", self._get_charge, methods=["GET"]),
            Route("/c/pay/{sid}", self._checkout_page, methods=["GET"]),
            Route("/c/pay/{sid}", self._checkout_submit, methods=["POST"]),
        ])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, loop="asyncio", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedStripe:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted Stripe did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    # ---- the API ---------------------------------------------------------------------------
    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> Response:
        return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)

    def _authorized(self, request: Request) -> Response | None:
        self.calls.append((request.method, request.url.path))
        if not self.available:
            return self._error(500, "An unknown error occurred", "api_error")
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return self._error(401, "Invalid API Key provided")
        return None

    async def _create_session(self, request: Request) -> Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        p = _nest(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        item = p["line_items"]["0"]
        cents = int(item["price_data"]["unit_amount"]) * int(item.get("quantity", "1"))
        sid = _id("cs")
        self.sessions[sid] = {
            "id": sid, "object": "checkout.session", "mode": p["mode"], "status": "open",
            "payment_status": "unpaid", "amount_subtotal": cents, "amount_total": cents,
            "currency": item["price_data"]["currency"], "client_reference_id":
            p.get("client_reference_id"), "customer_email": p.get("customer_email"),
            "metadata": p.get("metadata", {}), "payment_intent": None,
            "payment_method_types": ["card"], "success_url": p["success_url"],
            "cancel_url": p["cancel_url"], "url": f"{self.url}/c/pay/{sid}",
            "created": int(time.time()), "expires_at": int(time.time()) + 86400,
            "livemode": False,
        }
        return JSONResponse(self.sessions[sid])

    async def _get_session(self, request: Request) -> Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        session = self.sessions.get(request.path_params["sid"])
        if session is None:
            return self._error(404, "No such checkout.session")
        out = dict(session)
        expand = [v for k, v in request.query_params.multi_items() if k.startswith("expand")]
        if out["payment_intent"] and any(e.startswith("payment_intent") for e in expand):
            intent = dict(self.intents[out["payment_intent"]])
            if "payment_intent.latest_charge" in expand and intent["latest_charge"]:
                intent["latest_charge"] = self.charges[intent["latest_charge"]]
            out["payment_intent"] = intent
        return JSONResponse(out)

    async def _get_charge(self, request: Request) -> Response:
        if (denied := self._authorized(request)) is not None:
            return denied
        charge = self.charges.get(request.path_params["cid"])
        if charge is None:
            return self._error(404, "No such charge")
        return JSONResponse(charge)

    # ---- hosted Checkout ------------------------------------------------------------------
    async def _checkout_page(self, request: Request) -> Response:
        s = self.sessions[request.path_params["sid"]]
        return HTMLResponse(
            f"<!doctype html><title>Scripted Checkout</title><link rel=icon href=\"data:,\"><h1>Pay ${s['amount_total'] / 100:.2f}"
            f"</h1><form method=post><button id=pay>Pay</button></form>"
            f"<a id=back href=\"{s['cancel_url']}\">Back</a>")

    async def _checkout_submit(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        self.pay(sid)
        await self.adeliver("checkout.session.completed", self.sessions[sid])
        return RedirectResponse(self.sessions[sid]["success_url"].replace(
            "{CHECKOUT_SESSION_ID}", sid), status_code=303)

    # ---- what a customer / the Stripe dashboard does ---------------------------------------
    def pay(self, sid: str, *, delayed: bool = False) -> dict[str, Any]:
        """Complete the session. ``delayed``: an async method (paid later, see settle_async)."""
        s = self.sessions[sid]
        pid, cid = _id("pi"), _id("ch")
        self.charges[cid] = {
            "id": cid, "object": "charge", "amount": s["amount_total"], "amount_captured":
            s["amount_total"], "amount_refunded": 0, "currency": s["currency"],
            "paid": True, "refunded": False, "payment_intent": pid,
            "status": "pending" if delayed else "succeeded",
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
            "created": int(time.time()), "livemode": False,
        }
        self.intents[pid] = {
            "id": pid, "object": "payment_intent", "amount": s["amount_total"],
            "currency": s["currency"], "status": "processing" if delayed else "succeeded",
            "latest_charge": cid, "metadata": s["metadata"],
        }
        s.update(status="complete", payment_intent=pid,
                 payment_status="unpaid" if delayed else "paid")
        return s

    def settle_async(self, sid: str) -> dict[str, Any]:
        s = self.sessions[sid]
        s["payment_status"] = "paid"
        self.intents[s["payment_intent"]]["status"] = "succeeded"
        self.charges[self.intents[s["payment_intent"]]["latest_charge"]]["status"] = "succeeded"
        return s

    def refund(self, sid: str, cents: int | None = None) -> dict[str, Any]:
        charge = self.charges[self.intents[self.sessions[sid]["payment_intent"]]["latest_charge"]]
        amount = charge["amount"] - charge["amount_refunded"] if cents is None else cents
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        return charge

    # ---- events ---------------------------------------------------------------------------
    def event(self, kind: str, obj: dict[str, Any]) -> bytes:
        return orjson.dumps({
            "id": _id("evt"), "object": "event", "api_version": "2025-09-30.clover",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "type": kind,
            "data": {"object": obj},
        })

    def deliver(self, payload: bytes, signature: str | None = None, *,
                headers: dict[str, str] | None = None) -> httpx.Response:
        assert self.webhook_url
        hdrs = {"content-type": "application/json; charset=utf-8",
                "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)", **(headers or {})}
        if signature is not None:
            hdrs["stripe-signature"] = signature
        return httpx.post(self.webhook_url, content=payload, headers=hdrs, timeout=30)

    def send(self, kind: str, obj: dict[str, Any]) -> httpx.Response:
        payload = self.event(kind, obj)
        r = self.deliver(payload, sign(payload, self.webhook_secret))
        self.deliveries.append((kind, r.status_code))
        return r

    async def adeliver(self, kind: str, obj: dict[str, Any]) -> int:
        assert self.webhook_url
        payload = self.event(kind, obj)
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(self.webhook_url, content=payload, headers={
                "content-type": "application/json; charset=utf-8",
                "stripe-signature": sign(payload, self.webhook_secret)})
        self.deliveries.append((kind, r.status_code))
        return r.status_code
