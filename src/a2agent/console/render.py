"""Templates, display filters and the security headers every console response carries."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from starlette.responses import Response

from a2agent.console import i18n

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
def usd(micro: int | None) -> str:
    """Money as shown everywhere in the console: exact to the micro-dollar, trailing zeros
    trimmed but at least cents — "$5.00", "$0.06", "$0.008238", "$1,234.5678"."""
    value = int(micro or 0)
    whole, frac = divmod(abs(value), 1_000_000)
    cents = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{'-' if value < 0 else ''}${whole:,}.{cents}"


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


def usd_plain(micro: int | None) -> str:
    """Exact and trimmed, no sign of currency: 5000000 → "5", 250000 → "0.25" (form values)."""
    value = int(micro or 0)
    whole, frac = divmod(abs(value), 1_000_000)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return ("-" if value < 0 else "") + text


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


AGO_UNITS = ((86400 * 30, "%(num)d mo ago"), (86400, "%(num)d d ago"), (3600, "%(num)d h ago"),
             (60, "%(num)d min ago"))


@pass_context
def ago(ctx: Any, value: dt.datetime | None) -> str:
    t = i18n.translations(ctx.get("locale") or i18n.DEFAULT).gettext
    if value is None:
        return t("never")
    seconds = int((dt.datetime.now(dt.UTC) - value).total_seconds())
    for size, unit in AGO_UNITS:
        if seconds >= size:
            return t(unit) % {"num": seconds // size}
    return t("just now")


def per_million(micro_per_million: int) -> str:
    """A rate in micro-USD per 1M tokens, shown as dollars per 1M tokens."""
    value = int(micro_per_million) / 1_000_000
    return f"${value:,.2f}" if value == round(value, 2) else f"${value:,.4f}".rstrip("0")


def chart_table(spec: str) -> dict[str, Any]:
    """A chart's JSON (user_views.chart_json) as table rows, newest day first, and a one-line
    summary for the chart's accessible name."""
    import orjson

    data = orjson.loads(spec)
    kind = data.get("kind", "usd")
    series = data.get("series", [])

    def fmt(v: float) -> str:
        return usd(round(v * 1_000_000)) if kind == "usd" else num(v)

    rows = []
    for i, x in enumerate(data.get("x", [])):
        day = dt.datetime.fromtimestamp(x, dt.UTC).date().isoformat()
        rows.append((day, [fmt(s["values"][i]) for s in series]))
    totals = [sum(s["values"]) for s in series]
    summary = ", ".join(f"{s['label']} Σ {fmt(t)}" for s, t in zip(series, totals, strict=True))
    first_last = f"{rows[0][0]} – {rows[-1][0]}" if rows else ""
    return {"headers": [s["label"] for s in series], "rows": rows[::-1],
            "summary": f"{first_last}; {summary}" if series else ""}


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
        extensions=["jinja2.ext.i18n"],
    )
    # the language comes from each render's context ("locale"), so one environment serves all
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(locales=i18n.LOCALES, html_lang=i18n.HTML_LANG)
    env.filters.update(usd=usd, num=num, compact=compact, when=when, ago=ago,
                       per_million=per_million, plural=plural, usd_exact=usd_exact,
                       usd_plain=usd_plain, money=usd, chart_table=chart_table, usd_full=usd_full)
    env.globals.update(static=static_url)
    env.globals["ui"] = env.get_template("_macros.html").module
    env.globals["chart_ui"] = env.get_template("_chart.html").module
    env.globals["tm"] = env.get_template("_time.html").module
    return env


def render_text(name: str, context: dict[str, Any]) -> str:
    return templates().get_template(name).render(context)
