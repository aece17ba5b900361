"""Public key usage (/key-usage): paste a key, see what it has spent. No sign-in.

The key travels only in the body of the lookup POST (never in a URL, so no access log or
Referer carries it), is used for one digest lookup — the same as GET /v1/usage — and is
neither stored nor logged nor echoed back into the page.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.console.core import Console
from a2agent.console.session import Viewer, client_ip, wait_message

INVALID = "This key is not valid: it is unknown, mistyped or has been deleted."


async def key_usage_page(c: Console, request: Request, viewer: Viewer | None) -> Response:
    return c.page(request, "key_usage.html", viewer)


async def key_usage_lookup(c: Console, request: Request, viewer: Viewer | None) -> Response:
    form = await request.form()
    raw = form.get("key")
    presented = raw.strip() if isinstance(raw, str) else ""
    del form, raw
    template = "key_usage_result.html" if request.headers.get("hx-request") else "key_usage.html"

    def show(status: int = 200, **ctx: object) -> Response:
        # htmx swaps only 2xx answers; the full page keeps the real status
        code = 200 if template == "key_usage_result.html" else status
        return c.page(request, template, viewer, status=code, **ctx)

    ip = client_ip(request)
    wait = await c.throttle.blocked("key-usage", ip)
    if wait:
        return show(429, error=wait_message(wait))
    if not presented:
        return show(400, error="Paste an API key (it starts with sk-a2a-).")
    principal = await c.services.accounts.authenticate(presented)
    del presented
    if principal is None:
        await c.throttle.hit("key-usage", ip)
        return show(404, error=INVALID)
    usage = await c.gw.usage.key_summary(principal.key_id)
    return show(usage=usage, balance_micro=principal.balance_micro,
                suspended=principal.suspended)


def routes(c: Console) -> list[Route]:
    return [
        Route("/key-usage", c.public(key_usage_page), methods=["GET"]),
        Route("/key-usage", c.public(key_usage_lookup), methods=["POST"]),
    ]
