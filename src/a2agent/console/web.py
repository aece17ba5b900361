"""The web console: routes, static files and the HTML error page.

Server-rendered Jinja templates; htmx and uPlot are vendored under static/vendor (see
scripts/vendor-assets.sh). No inline scripts or styles: the Content-Security-Policy allows
only this origin's files.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from a2agent.console import (admin_catalog, admin_views, auth_views, billing_views, public_views,
                             user_views)
from a2agent.console.core import Console
from a2agent.console.render import SECURITY_HEADERS, STATIC_DIR, render_text, secure

MESSAGES = {
    404: ("Page not found", "There is nothing at this address."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
}


async def html_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    title, message = MESSAGES.get(status, ("Something went wrong", "Please try again."))
    body = render_text("error.html", {"viewer": None, "status_code": status, "title": title,
                                      "message": message, "path": request.url.path})
    return secure(HTMLResponse(body, status_code=status))


class _SecureStatic:
    """StaticFiles plus the console's security headers and a long cache for versioned URLs."""

    def __init__(self) -> None:
        self.files = StaticFiles(directory=STATIC_DIR)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        versioned = b"v=" in scope.get("query_string", b"")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"cache-control"]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                cache = "public, max-age=31536000, immutable" if versioned else "public, max-age=300"
                headers.append((b"cache-control", cache.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.files(scope, receive, send_with_headers)


def console_routes(gateway: Any) -> list[Any]:
    console = Console(gateway)
    return [
        *auth_views.routes(console),
        *public_views.routes(console),
        *user_views.routes(console),
        *billing_views.routes(console),
        *admin_views.routes(console),
        *admin_catalog.routes(console),
        Mount("/static", app=_SecureStatic(), name="static"),
    ]
