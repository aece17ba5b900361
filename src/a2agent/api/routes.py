"""The data plane's HTTP edge: authentication, body limits, validation, error envelopes.

No business rules here: admission lives in billing/, routing and relaying in routing/.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.api.encoding import decode_body
from a2agent.api.errors import (
    ANTHROPIC,
    OPENAI,
    RESPONSES,
    ApiError,
    error_response,
    unavailable_error,
)
from a2agent.api.shapes import check_shape
from a2agent.auth.accounts import KeyPrincipal
from a2agent.billing.reservation import cap_field
from a2agent.routing.relay import RequestContext
from a2agent.translate.walk import MAX_JSON_DEPTH, TooDeep, estimate_tokens, json_depth

MODELS_HINT = "List the models you can use with GET /v1/models."


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def presented_key(request: Request) -> str:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Malformed Authorization header: use 'Authorization: Bearer <key>'.",
                           code="invalid_api_key")
        return token.strip()
    key = request.headers.get("x-api-key")
    if key is not None and key.strip():
        return key.strip()
    raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                   code="missing_api_key")


async def authenticate(request: Request) -> KeyPrincipal:
    gw = request.app.state.gateway
    key = presented_key(request)
    principal = await gw.services.accounts.authenticate(key)
    if principal is None:
        # the Anthropic SDK sends both headers when both of its variables are set: either may
        # carry the valid key
        other = (request.headers.get("x-api-key") or "").strip()
        if other and other != key and request.headers.get("authorization") is not None:
            principal = await gw.services.accounts.authenticate(other)
    if principal is None:
        raise ApiError(401, "Invalid API key: it is unknown or has been deleted.", code="invalid_api_key")
    return principal


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request body too large: the limit is {limit} bytes.",
                           code="request_too_large")
        parts.append(chunk)
    return b"".join(parts)


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise ApiError(400, "Request body is empty: send a JSON object.", code="invalid_json")
    too_deep = ApiError(400, f"Request body is nested too deeply: the limit is {MAX_JSON_DEPTH} levels of "
                             "objects and arrays.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # the parser's own (higher) limit
            raise too_deep from None
        raise ApiError(400, f"Request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.", code="invalid_json")
    try:
        json_depth(body, MAX_JSON_DEPTH)
    except TooDeep:
        raise too_deep from None
    return body


def _require(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> None:
    value = body.get(name)
    if value is None:
        raise ApiError(400, f"{name}: Field required", param=name, code="missing_required_field")
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ApiError(400, f"{name}: must be {what}", param=name, code="invalid_type")


def validate(body: dict[str, Any], protocol: str) -> None:
    _require(body, "model", str, "a string")
    _require(body, "messages", list, "an array of messages")
    if protocol == ANTHROPIC:
        _require(body, "max_tokens", int, "an integer")
        if body["max_tokens"] < 1:
            raise ApiError(400, "max_tokens: must be at least 1", param="max_tokens")
    if not body["messages"] and protocol == OPENAI:
        raise ApiError(400, "messages: must contain at least one message", param="messages")
    for i, msg in enumerate(body["messages"]):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ApiError(400, f"messages.{i}: each message needs a 'role'", param=f"messages[{i}]")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "stream: must be a boolean", param="stream")
    check_shape(body)


def validate_responses(body: dict[str, Any]) -> None:
    _require(body, "model", str, "a string")
    value = body.get("input")
    if value is None:
        raise ApiError(400, "input: Field required", param="input", code="missing_required_field")
    if not isinstance(value, (str, list)):
        raise ApiError(400, "input: must be a string or an array of input items", param="input",
                       code="invalid_type")
    if body.get("previous_response_id") is not None:
        raise ApiError(400, "previous_response_id: not supported: this gateway stores no responses. Send the "
                            "whole conversation in 'input' (store is ignored).", param="previous_response_id",
                       code="unsupported_parameter")
    if body.get("background"):
        raise ApiError(400, "background: background responses are not supported", param="background",
                       code="unsupported_parameter")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "stream: must be a boolean", param="stream")
    for name in ("instructions",):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ApiError(400, f"{name}: must be a string", param=name, code="invalid_type")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ApiError(400, "max_output_tokens: must be a positive integer", param="max_output_tokens")
    check_shape(body)


def validate_embeddings(body: dict[str, Any], protocol: str) -> None:
    _require(body, "model", str, "a string")
    value = body.get("input")
    if value is None:
        raise ApiError(400, "input: Field required", param="input", code="missing_required_field")
    if isinstance(value, str):
        ok = bool(value)
    elif isinstance(value, list):
        ok = bool(value) and all(isinstance(v, (str, int, list)) for v in value)
    else:
        ok = False
    if not ok:
        raise ApiError(400, "input: must be a non-empty string or array", param="input", code="invalid_type")
    if body.get("stream"):
        raise ApiError(400, "stream: embeddings are not streamed", param="stream")


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Cheap estimate (≈4 characters a token; 1,000 a picture) used before usage is known."""
    return estimate_tokens(body.get("system"), body.get("messages"), body.get("tools"),
                           body.get("input"), body.get("instructions"))  # input: embeddings, responses


def _caller_headers(request: Request) -> dict[str, str]:
    h = request.headers
    out = {}
    for name in ("anthropic-version", "anthropic-beta"):
        value = h.get(name)
        if value:
            out[name] = value
    return out


async def _admitted_model(gw: Any, principal: KeyPrincipal, body: dict[str, Any]) -> Any:
    """The account may send requests, and the model it names exists (else ApiError)."""
    gw.admission.check_account(principal)
    snapshot = await gw.services.catalog.snapshot(principal.catalog_version)
    entry = snapshot.models.get(body["model"])
    if entry is None:
        raise ApiError(404, f"The model '{body['model']}' does not exist or you do not have access "
                            f"to it. {MODELS_HINT}", code="model_not_found", param="model")
    return entry


async def _relay(request: Request, protocol: str, endpoint: str = "chat") -> Response:
    gw = request.app.state.gateway
    rid = new_request_id()
    try:
        principal = await authenticate(request)
        raw = await read_body(request, gw.settings.max_body_bytes)
        raw = decode_body(request, raw, gw.settings.max_body_bytes)
        body = parse_json(raw)
        if protocol == RESPONSES:
            validate_responses(body)
        else:
            (validate_embeddings if endpoint == "embeddings" else validate)(body, protocol)
        entry = await _admitted_model(gw, principal, body)
        ctx = RequestContext(
            request_id=rid,
            protocol=protocol,
            principal=principal,
            entry=entry,
            body=body,
            raw=raw,
            client_ip=request.client.host if request.client else None,
            caller_headers=_caller_headers(request),
            input_estimate=estimate_input_tokens(body),
            endpoint=endpoint,
        )
        # the caller's body is translated and encoded before admission: a body we cannot
        # handle is a 400 that takes no slot and never counts against a channel
        gw.relay.prepare(ctx)
        assert ctx.reservation is not None
        gw.admission.check_balance(principal, entry.prices, ctx.reservation, cap_field(body))
        release = await gw.admission.admit(principal)
        try:
            ctx.headers = await gw.admission.limit_headers(principal)
        except BaseException:
            release()
            raise
        return await gw.relay.run(ctx, release)
    except ApiError as err:
        return error_response(protocol, err, rid)
    except Exception as exc:
        unavailable = unavailable_error(exc, gw.services.deps)
        if unavailable is None:
            raise
        return error_response(protocol, unavailable, rid)


async def chat_completions(request: Request) -> Response:
    return await _relay(request, OPENAI)


async def messages(request: Request) -> Response:
    return await _relay(request, ANTHROPIC, "messages")


async def responses(request: Request) -> Response:
    return await _relay(request, RESPONSES, "responses")


async def embeddings(request: Request) -> Response:
    return await _relay(request, OPENAI, "embeddings")


async def count_tokens(request: Request) -> Response:
    gw = request.app.state.gateway
    try:
        principal = await authenticate(request)
        raw = await read_body(request, gw.settings.max_body_bytes)
        body = parse_json(raw)
        _require(body, "model", str, "a string")
        _require(body, "messages", list, "an array of messages")
        check_shape(body)
        # admitted like a request (it may call the upstream with the channel's credential):
        # suspension, funds, concurrency and requests per minute; never charged
        entry = await _admitted_model(gw, principal, body)
        gw.admission.check_funded(principal, entry.prices)
        release = await gw.admission.admit(principal)
        try:
            count = await gw.token_counts.count(entry, body, _caller_headers(request))
        finally:
            release()
        return Response(orjson.dumps({"input_tokens": count}), media_type="application/json")
    except ApiError as err:
        return error_response(ANTHROPIC, err)


async def list_models(request: Request) -> Response:
    gw = request.app.state.gateway
    anthropic_client = "anthropic-version" in request.headers
    try:
        principal = await authenticate(request)
        snapshot = await gw.services.catalog.snapshot(principal.catalog_version)
    except ApiError as err:
        return error_response(ANTHROPIC if anthropic_client else OPENAI, err)
    data = []
    for m in sorted(snapshot.models.values(), key=lambda m: m.model_id):
        if not m.protocols:  # no route, or every route's channel disabled: not callable
            continue
        created = m.created_at
        data.append({
            "id": m.model_id,
            "object": "model",
            "created": created,
            "owned_by": "a2agent",
            "type": "model",
            "display_name": m.model_id,
            "created_at": _iso(created),
            "context_window": m.context_window,
        })
    payload = {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
    return Response(orjson.dumps(payload), media_type="application/json")


async def codex_models(request: Request) -> Response:
    """Codex CLI's ``model_catalog_url`` (see :mod:`a2agent.api.codex_catalog`)."""
    from a2agent.api.codex_catalog import codex_catalog

    gw = request.app.state.gateway
    try:
        principal = await authenticate(request)
        snapshot = await gw.services.catalog.snapshot(principal.catalog_version)
    except ApiError as err:
        return error_response(OPENAI, err)
    return Response(orjson.dumps(codex_catalog(list(snapshot.models.values()))), media_type="application/json",
                    headers={"cache-control": "no-store"})


async def retrieve_model(request: Request) -> Response:
    """``GET /v1/models/{id}`` (``models.retrieve`` in both SDKs): the OpenAI shape, or the
    Anthropic one (and its error envelope) for a caller that sends ``anthropic-version``."""
    gw = request.app.state.gateway
    anthropic_client = "anthropic-version" in request.headers
    protocol = ANTHROPIC if anthropic_client else OPENAI
    model_id = request.path_params["model_id"]
    try:
        principal = await authenticate(request)
        snapshot = await gw.services.catalog.snapshot(principal.catalog_version)
        m = snapshot.models.get(model_id)
        if m is None or not m.protocols:
            raise ApiError(404, f"The model '{model_id}' does not exist or you do not have access to it. "
                                f"{MODELS_HINT}", code="model_not_found", param="model")
    except ApiError as err:
        return error_response(protocol, err)
    if anthropic_client:
        payload: dict[str, Any] = {"type": "model", "id": m.model_id, "display_name": m.model_id,
                                   "created_at": _iso(m.created_at)}
    else:
        payload = {"id": m.model_id, "object": "model", "created": m.created_at, "owned_by": "a2agent"}
    payload["context_window"] = m.context_window
    return Response(orjson.dumps(payload), media_type="application/json")


def _iso(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def key_usage(request: Request) -> Response:
    gw = request.app.state.gateway
    try:
        principal = await authenticate(request)
    except ApiError as err:
        return error_response(OPENAI, err)
    usage = await gw.usage.key_summary(principal.key_id)
    usage["balance_usd"] = _usd(principal.balance_micro)
    usage["balance_micro_usd"] = principal.balance_micro
    return Response(orjson.dumps(usage), media_type="application/json",
                    headers={"cache-control": "no-store"})


def _usd(micro: int) -> str:
    from a2agent.billing.money import micro_to_usd

    return micro_to_usd(micro)


async def ok_probe(request: Request) -> Response:
    return Response(b"", status_code=200)


async def event_logging(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/responses", responses, methods=["POST"]),
    Route("/responses", responses, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/codex/models", codex_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
    Route("/v1/usage", key_usage, methods=["GET"]),
    Route("/api/hello", ok_probe, methods=["GET", "HEAD"]),
    Route("/api/event_logging/batch", event_logging, methods=["POST"]),
]
