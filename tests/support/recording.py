"""What the fake upstream records about each request, and its path routing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import parse_qs

from .script import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, MODELS, RESPONSES, Script


@dataclass
class RecordedRequest:
    """One request received by the fake (control-API calls are not recorded)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    json: Any  # parsed body, None if absent / not JSON
    time: float  # time.time() when the request was fully read
    endpoint: Optional[str]  # chat / messages / count_tokens / models / embeddings / None
    model: Optional[str] = None
    stream: bool = False
    script: Optional[Script] = None  # the queued script used (None = default)
    completed: bool = False  # the response was fully written
    client_disconnected: bool = False  # the client went away before the response finished
    # pending / ok / error_status / reset / truncated / error_event / disconnected
    outcome: str = "pending"

    @property
    def query_params(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
            "body": None if self.json is not None else self.body.decode("utf-8", "replace"),
            "time": self.time,
            "endpoint": self.endpoint,
            "model": self.model,
            "stream": self.stream,
            "completed": self.completed,
            "client_disconnected": self.client_disconnected,
            "outcome": self.outcome,
        }


def route(method: str, path: str) -> Optional[str]:
    """Suffix routing, so any base path prefix works (``/v1``, ``/api/v1``...)."""
    p = path.rstrip("/")
    if method == "POST":
        if p.endswith("/chat/completions"):
            return CHAT
        if p.endswith("/messages/count_tokens"):
            return COUNT_TOKENS
        if p.endswith("/messages"):
            return MESSAGES
        if p.endswith("/embeddings"):
            return EMBEDDINGS
        if p.endswith("/responses"):
            return RESPONSES
    elif method == "GET" and p.endswith("/models"):
        return MODELS
    return None
