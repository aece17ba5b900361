"""Rendering a Script into bytes and writing them with the scripted faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Optional

import orjson

from . import wire_anthropic as wa
from . import wire_openai as wo
from . import wire_responses as wr
from .http11 import Connection, build_head
from .recording import RecordedRequest
from .script import CHAT, RESPONSES, Script, fault_position, hash_str, resolve_usage

JSON_CT = "application/json"
SSE_CT = "text/event-stream; charset=utf-8"

OnDisconnect = Callable[[RecordedRequest], None]


# --------------------------------------------------------------------------- rendering


def render_nonstream(endpoint: str, s: Script, body: Any, model: str, hexid: str, default_text: str) -> bytes:
    usage = resolve_usage(s, body, default_text)
    if endpoint == RESPONSES:
        obj = wr.response(s, rid=hexid, model=model, usage=usage, default_text=default_text)
    elif endpoint == CHAT:
        obj = wo.completion(
            s, rid="chatcmpl-" + hexid, created=int(time.time()), model=model, usage=usage, default_text=default_text
        )
    else:
        obj = wa.message(s, mid="msg_" + hexid, model=model, usage=usage, default_text=default_text)
    return orjson.dumps(obj)


def render_malformed(endpoint: str, hexid: str) -> bytes:
    if endpoint == RESPONSES:
        return wr.malformed_body(hexid)
    return wo.malformed_body("chatcmpl-" + hexid) if endpoint == CHAT else wa.malformed_body("msg_" + hexid)


def render_stream(endpoint: str, s: Script, body: Any, model: str, hexid: str, default_text: str) -> list[bytes]:
    """All SSE events, with the content faults (malformed / unknown event) applied."""
    rid = "chatcmpl-" + hexid
    if s.raw_frames is not None:
        frames = [f.encode() if isinstance(f, str) else f for f in s.raw_frames]
    elif endpoint == RESPONSES:
        frames = wr.stream_frames(s, rid=hexid, model=model, usage=resolve_usage(s, body, default_text),
                                  default_text=default_text)
    elif endpoint == CHAT:
        opts = body.get("stream_options") if isinstance(body, dict) else None
        frames = wo.stream_frames(
            s,
            rid=rid,
            created=int(time.time()),
            model=model,
            usage=resolve_usage(s, body, default_text),
            default_text=default_text,
            include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")),
        )
    else:
        frames = wa.stream_frames(
            s, mid="msg_" + hexid, model=model, usage=resolve_usage(s, body, default_text), default_text=default_text
        )
    k = fault_position(s.malformed_json)
    if k is not None and k < len(frames):
        frames[k] = (wo.malformed_frame(rid) if endpoint == CHAT else wr.malformed_frame(hexid)
                     if endpoint == RESPONSES else wa.malformed_frame())
    k = fault_position(s.unknown_event)
    if k is not None:
        frames[k:k] = (wo.unknown_frames(rid, int(time.time()), model) if endpoint == CHAT
                       else wr.unknown_frames() if endpoint == RESPONSES else wa.unknown_frames())
    return frames


def raw_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)


def embeddings(body: Any, model: Optional[str]) -> dict:
    """Deterministic 8-dimensional vectors (OpenAI embeddings shape)."""
    inputs = body.get("input") if isinstance(body, dict) else None
    if isinstance(inputs, str) or inputs is None:
        inputs = [inputs or ""]
    data = []
    tokens = 0
    for i, item in enumerate(inputs):
        text = item if isinstance(item, str) else orjson.dumps(item).decode()
        tokens += max(1, len(text) // 4)
        h = hash_str(text)
        data.append({"object": "embedding", "index": i, "embedding": [((h >> (8 * j)) & 0xFF) / 255.0 - 0.5 for j in range(8)]})
    return {"object": "list", "data": data, "model": model or "unknown", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# --------------------------------------------------------------------------- writing
# The request's outcome is always set BEFORE the final write: the client may
# inspect the recording as soon as it has the response.


def send_error(
    conn: Connection,
    rec: RecordedRequest,
    anthropic: bool,
    status: int,
    s: Optional[Script],
    headers: list[tuple[str, str]],
    request_id: str,
) -> None:
    body = wa.error_body(status, s, request_id) if anthropic else wo.error_body(status, s)
    if anthropic:
        headers = headers + [("x-should-retry", "true" if status in (408, 409, 429) or status >= 500 else "false")]
    rec.completed, rec.outcome = True, "error_status"
    conn.send(status, headers + [("content-type", JSON_CT)], orjson.dumps(body))


async def send_body(
    conn: Connection,
    rec: RecordedRequest,
    s: Script,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    on_disconnect: OnDisconnect,
) -> None:
    """Fixed-length response.  Mid-body faults cut the body in half."""
    headers = headers + [("content-type", JSON_CT)]
    reset = fault_position(s.reset_mid_stream) is not None
    truncated = fault_position(s.truncated_sse) is not None
    if not (reset or truncated or s.stall_mid_stream):
        rec.completed, rec.outcome = True, "ok"
        conn.send(status, headers, body)
        return
    half = len(body) // 2
    conn.write(build_head(status, headers + [("content-length", str(len(body)))]) + body[:half])
    if s.stall_mid_stream and not await conn.sleep(s.stall_mid_stream):
        on_disconnect(rec)
        return
    if reset:
        await conn.sleep(0.02)  # let the client read the partial body first
        rec.outcome = "reset"
        conn.abort()
        return
    if truncated:  # shorter than Content-Length, then FIN
        rec.outcome = "truncated"
        conn.must_close = True
        conn.close()
        return
    rec.completed, rec.outcome = True, "ok"
    conn.write(body[half:])


async def send_stream(
    conn: Connection,
    rec: RecordedRequest,
    s: Script,
    status: int,
    headers: list[tuple[str, str]],
    frames: list[bytes],
    endpoint: str,
    on_disconnect: OnDisconnect,
) -> None:
    """Chunked SSE response; stream faults fire at their event index."""
    conn.start_chunked(status, headers + [("content-type", SSE_CT), ("cache-control", "no-cache")])
    reset_k = fault_position(s.reset_mid_stream)
    trunc_k = fault_position(s.truncated_sse)
    err_k = fault_position(s.error_event_mid_stream)
    stall_k = s.stall_after if s.stall_mid_stream else None
    n = len(frames)
    for i in range(n + 1):
        if i == stall_k and not await conn.sleep(s.stall_mid_stream):
            on_disconnect(rec)
            return
        if i == reset_k:
            await conn.sleep(0.02)  # let the client read what was sent
            rec.outcome = "reset"
            conn.abort()
            return
        if i == err_k:
            rec.completed, rec.outcome = True, "error_event"
            conn.end_chunked(wo.error_frame(s) if endpoint == CHAT else wr.error_frame(s)
                             if endpoint == RESPONSES else wa.error_frame(s))
            return
        if i == trunc_k:
            frame = frames[i] if i < n else b'data: {"truncated'
            rec.completed, rec.outcome = True, "truncated"
            conn.end_chunked(frame[: max(1, len(frame) // 2)])
            return
        if i == n:
            rec.completed, rec.outcome = True, "ok"
            conn.end_chunked()
            return
        if i > 0 and s.chunk_delay and not await conn.sleep(s.chunk_delay):
            on_disconnect(rec)
            return
        if conn.lost:
            on_disconnect(rec)
            return
        frame = frames[i]
        if s.fragment_frames and len(frame) > 1:
            cut = max(1, len(frame) // 2)
            await conn.write_chunk(frame[:cut])
            await asyncio.sleep(0.001)
            frame = frame[cut:]
        if i == n - 1 and n not in (stall_k, reset_k, err_k, trunc_k):
            rec.completed, rec.outcome = True, "ok"
            conn.end_chunked(frame)  # last event + terminator in one write
            return
        await conn.write_chunk(frame)
