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
    """Feed bytes, get complete events. Handles LF, CRLF and CR line endings.

    Line endings are normalised to LF as bytes arrive. A CR ends a line at once (whether or
    not an LF follows), so an event is complete as soon as its blank line's CR is read; an LF
    that then starts the next read is the rest of that CRLF and is dropped.
    """

    __slots__ = ("_buf", "_after_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
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
        rest, self._buf, self._after_cr = self._buf, b"", False
        if not rest.strip():
            return []
        ev = _parse(rest + (b"\n" if rest.endswith(b"\n") else b"\n\n"))
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
