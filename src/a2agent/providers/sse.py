"""Incremental Server-Sent Events decoding that keeps each event's raw bytes.

The relay forwards an event's original bytes untouched (no re-serialising) and parses only
the events it needs (usage). Chunk boundaries may fall anywhere, including inside a CRLF.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    raw: bytes  # the event's bytes including its terminating blank line
    event: str | None
    data: bytes  # data lines joined with "\n"

    @property
    def is_comment(self) -> bool:
        return self.event is None and not self.data


class SSEDecoder:
    """Feed bytes, get complete events. Handles LF, CRLF and CR line endings."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # a trailing CR may be half of a CRLF: keep it until the next chunk decides
            hold = buf.endswith(b"\r")
            if hold:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            raw = buf[start : end + 2]
            start = end + 2
            ev = _parse(raw)
            if ev is not None:
                events.append(ev)
        self._buf = buf[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """Events still buffered when the stream ends (an unterminated last event)."""
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        if not rest.strip():
            return []
        ev = _parse(rest + b"\n\n")
        return [ev] if ev is not None else []

    @property
    def pending(self) -> bytes:
        return self._buf


def _parse(raw: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if not line or line[0:1] == b":":
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if event is None and not data:
        return SSEEvent(raw=raw, event=None, data=b"")
    return SSEEvent(raw=raw, event=event, data=b"\n".join(data))


def encode_event(event: str | None, data: bytes) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
