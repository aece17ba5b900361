"""Error envelopes in the caller's protocol, for whole responses and for streams."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from a2agent.store.faults import DependencyHealth, classify

OPENAI = "openai"
ANTHROPIC = "anthropic"
RESPONSES = "responses"  # the OpenAI Responses API (a caller protocol, and a channel protocol)

# HTTP status → Anthropic error type (protocols.md §2.6)
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# HTTP status → OpenAI error type
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raised anywhere on the data plane; rendered in the caller's protocol by the edge."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        err_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.err_type = err_type
        self.headers = headers or {}


def unavailable_error(exc: BaseException, deps: DependencyHealth) -> ApiError | None:
    """A database or Redis outage as the caller sees it: 503 (OpenAI ``service_unavailable``,
    Anthropic ``overloaded_error``) naming what is away, with Retry-After. None when ``exc`` is
    not an outage. Raised before any upstream call, so nothing was spent or charged."""
    err = classify(exc)
    if err is None:
        return None
    deps.failed(err)
    return ApiError(503, f"Service temporarily unavailable: {err.what} is not reachable. Retry in "
                         f"a few seconds; this request was not charged.", code="service_unavailable",
                    headers={"retry-after": str(err.retry_after)})


def anthropic_type(status: int) -> str:
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def openai_type(status: int) -> str:
    if status in _OPENAI_TYPES:
        return _OPENAI_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(protocol: str, err: ApiError, request_id: str | None = None) -> bytes:
    if protocol == ANTHROPIC:
        payload: dict = {
            "type": "error",
            "error": {"type": err.err_type or anthropic_type(err.status), "message": err.message},
        }
        if request_id:
            payload["request_id"] = request_id
        return orjson.dumps(payload)
    return orjson.dumps(
        {
            "error": {
                "message": err.message,
                "type": err.err_type or openai_type(err.status),
                "param": err.param,
                "code": err.code,
            }
        }
    )


def error_response(protocol: str, err: ApiError, request_id: str | None = None) -> Response:
    headers = dict(err.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(
        error_body(protocol, err, request_id),
        status_code=err.status,
        media_type="application/json",
        headers=headers,
    )


def stream_error_event(protocol: str, err_type: str, message: str) -> bytes:
    """A terminal error event for a stream that already started."""
    if protocol == ANTHROPIC:
        data = orjson.dumps({"type": "error", "error": {"type": err_type, "message": message}})
        return b"event: error\ndata: " + data + b"\n\n"
    data = orjson.dumps(
        {"error": {"message": message, "type": err_type, "param": None, "code": None}}
    )
    return b"data: " + data + b"\n\n"
