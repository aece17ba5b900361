"""Templates, display filters and the security headers every console response carries."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import Response

from a2agent.billing.money import fmt_usd

STATIC_DIR = Path(__file__).parent / "static"

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cross-origin-opener-policy": "same-origin",
}


def secure(response: Response, *, cache: bool = False) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not cache:
        response.headers.setdefault("cache-control", "no-store")
    return response


# ---- display filters --------------------------------------------------------------------------
def usd(micro: int | None, places: int = 2) -> str:
    return fmt_usd(int(micro or 0), places)


def num(value: int | float | None) -> str:
    return f"{int(value or 0):,}"


def plural(value: int | None, noun: str, nouns: str | None = None) -> str:
    n = int(value or 0)
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def usd_exact(micro: int | None) -> str:
    value = int(micro or 0)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 1_000_000)
    return f"{sign}${whole:,}.{frac:06d}"


def usd_full(micro: int | None) -> str:
    """Exact to the micro-dollar, without trailing zeros past the cents: "$5.00", "$0.001234"."""
    value = int(micro or 0)
    whole, frac = divmod(abs(value), 1_000_000)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{'-' if value < 0 else ''}${whole:,}.{digits}"


def compact(value: int | float | None) -> str:
    n = float(value or 0)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= limit:
            text = f"{n / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{int(n):,}"


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def ago(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((dt.datetime.now(dt.UTC) - value).total_seconds())
    if seconds < 60:
        return "just now"
    for size, unit in ((86400 * 30, "mo"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def per_million(micro_per_million: int) -> str:
    """A rate in micro-USD per 1M tokens, shown as dollars per 1M tokens."""
    value = int(micro_per_million) / 1_000_000
    return f"${value:,.2f}" if value == round(value, 2) else f"${value:,.4f}".rstrip("0")


@functools.cache
def _static_versions() -> dict[str, str]:
    out = {}
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            rel = path.relative_to(STATIC_DIR).as_posix()
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return out


def static_url(path: str) -> str:
    version = _static_versions().get(path, "0")
    return f"/static/{path}?v={version}"


@functools.cache
def templates() -> Environment:
    """The template environment: built once, read-only afterwards."""
    env = Environment(
        loader=PackageLoader("a2agent.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=usd, num=num, compact=compact, when=when, ago=ago,
                       per_million=per_million, plural=plural, usd_exact=usd_exact,
                       usd_full=usd_full)
    env.globals.update(static=static_url)
    env.globals["ui"] = env.get_template("_macros.html").module
    return env


def render_text(name: str, context: dict[str, Any]) -> str:
    return templates().get_template(name).render(context)
