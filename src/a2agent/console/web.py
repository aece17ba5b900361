"""Console routes (see console issue); the HTML error page."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response


async def html_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    return HTMLResponse(f"<h1>{status}</h1>", status_code=status)


def console_routes(gateway: Any) -> list[Any]:
    return []
