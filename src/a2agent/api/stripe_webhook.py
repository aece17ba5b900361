"""POST /webhooks/stripe: Stripe's event deliveries (mounted only where Stripe is configured).

400 = not signed by our webhook secret (nothing applied; Stripe shows it as failed);
503 = not processable yet (Stripe retries); 200 = applied, a duplicate, or an ignored type.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from a2agent.billing.payments import WebhookRetry
from a2agent.billing.stripe_api import BadSignature

MAX_EVENT_BYTES = 1024 * 1024


async def stripe_webhook(request: Request) -> Response:
    gw: Any = request.app.state.gateway
    payments = gw.services.payments
    if payments is None:
        return JSONResponse({"error": "card payments are not configured"}, status_code=404)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENT_BYTES:
            return JSONResponse({"error": "event too large"}, status_code=413)
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        result = await payments.handle_event(body, request.headers.get("stripe-signature"))
    except BadSignature as exc:
        return JSONResponse({"error": f"signature verification failed: {exc}"}, status_code=400)
    except WebhookRetry as exc:
        return JSONResponse({"error": f"not processed, retry later: {exc}"}, status_code=503)
    return JSONResponse({"received": True, "result": result})
