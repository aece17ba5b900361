"""Upstream error text as a caller may see it: no credential fragments, no upstream host names
or addresses, and the public model id instead of the upstream's own model name."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_URL = re.compile(r"\b(?:https?|wss?)://[^\s\"'<>)]+", re.IGNORECASE)
_IP = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\[[0-9a-fA-F:]{3,}\](?::\d+)?")
_HOST = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:com|net|org|io|ai|cn|dev|cloud|app|co|"
                   r"us|uk|de|jp|internal|local|localhost|lan|svc|cluster)(?::\d+)?\b", re.IGNORECASE)
# key-like: a known prefix followed by a token, or any long token mixing letters and digits
_KEY_PREFIXED = re.compile(r"\b(?:sk|pk|rk|ak|key|api|token|bearer)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{20,}")


def _secretish(m: re.Match[str]) -> str:
    word = m.group(0)
    if any(c.isdigit() for c in word) and any(c.isalpha() for c in word):
        return "[redacted]"
    return word


def sanitize(message: str, *, upstream_model: str | None = None, model: str | None = None,
             base_url: str | None = None, limit: int = 500) -> str:
    text = message[:4000]
    if upstream_model and model and upstream_model != model:
        text = re.sub(rf"(?<![\w.-]){re.escape(upstream_model)}(?![\w-])", model, text)
    if base_url:
        host = urlsplit(base_url).hostname
        if host:
            text = re.sub(re.escape(host), "[upstream]", text, flags=re.IGNORECASE)
    text = _URL.sub("[upstream]", text)
    text = _KEY_PREFIXED.sub("[redacted]", text)
    text = _TOKEN.sub(_secretish, text)
    text = _IP.sub("[upstream]", text)
    text = _HOST.sub("[upstream]", text)
    text = text.strip()
    return text[:limit] + ("…" if len(text) > limit else "")
