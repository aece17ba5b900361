"""Properties of the relay's incremental SSE decoder (a2agent.providers.sse.SSEDecoder).

For any list of events (named or not, multi-line data, comments, ignored fields), written with
LF, CRLF or CR line endings (or a mix) and cut into pieces at arbitrary byte boundaries:

* feeding the pieces yields exactly what feeding the whole stream yields (event, data, raw);
* that is what the events say (the SSE field rules: one optional space after the colon is
  dropped, data lines are joined with LF, comments and unknown fields are ignored);
* relaying the ``raw`` bytes of the parsed events gives a stream that parses identically
  (this is what the passthrough relay sends to clients);
* a stream whose last event lacks its blank line still yields that event from ``flush()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from a2agent.providers.sse import SSEDecoder, SSEEvent, encode_event

EOLS = ["\n", "\r\n", "\r"]

line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
name_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1,
                    max_size=10).filter(lambda s: not s.startswith(" "))


@dataclass
class Ev:
    name: str | None
    data: list[str]
    comments: list[str]
    extra: list[str]  # id: / retry: / unknown fields, ignored by the decoder
    tight: list[bool]  # per data line: "data:x" instead of "data: x"

    def lines(self) -> list[str]:
        out = [":" + c for c in self.comments]
        if self.name is not None:
            out.append("event: " + self.name)
        out += self.extra
        for text, tight in zip(self.data, self.tight, strict=False):
            if tight and not text.startswith(" "):
                out.append("data:" + text)
            else:
                out.append("data: " + text)
        return out

    def expected(self) -> tuple[str | None, bytes]:
        return self.name, "\n".join(self.data).encode()


@st.composite
def events(draw: st.DrawFn) -> Ev:
    name = draw(st.none() | name_text)
    data = draw(st.lists(line_text, max_size=4))
    comments = draw(st.lists(line_text, max_size=2))
    extra = draw(st.lists(st.sampled_from(["id: 7", "retry: 1000", "x-unknown: field", "id"]), max_size=2))
    if name is None and not data and not comments and not extra:
        comments = [""]  # every event has at least one line (a bare blank line is not an event)
    tight = draw(st.lists(st.booleans(), min_size=len(data), max_size=len(data)))
    return Ev(name, data, comments, extra, tight)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Ev], bytes]:
    evs = draw(st.lists(events(), min_size=0, max_size=8))
    mixed = draw(st.booleans())
    stream_eol = draw(st.sampled_from(EOLS))
    parts: list[str] = []
    prev = ""
    for ev in evs:
        for line in ev.lines() + [""]:  # the empty line ends the event
            eol = draw(st.sampled_from(EOLS)) if mixed else stream_eol
            if prev == "\r" and not line and eol.startswith("\n"):
                # a bare CR, then an empty line ended by LF, reads as ONE CRLF line break (the
                # SSE rule): that stream would not mean these events, so end this line with CR
                eol = "\r"
            parts.append(line + eol)
            prev = eol
    return evs, "".join(parts).encode()


@st.composite
def cuts(draw: st.DrawFn, size: int) -> list[int]:
    if size == 0:
        return []
    return sorted(set(draw(st.lists(st.integers(0, size), max_size=12))))


def feed_all(dec: SSEDecoder, pieces: list[bytes]) -> list[SSEEvent]:
    out: list[SSEEvent] = []
    for p in pieces:
        out.extend(dec.feed(p))
    out.extend(dec.flush())
    return out


def split(data: bytes, at: list[int]) -> list[bytes]:
    bounds = [0, *at, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def triples(evs: list[SSEEvent]) -> list[tuple[str | None, bytes, bytes]]:
    return [(e.event, e.data, e.raw) for e in evs]


def pairs(evs: list[SSEEvent]) -> list[tuple[str | None, bytes]]:
    return [(e.event, e.data) for e in evs]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@example(data=None)
def test_split_feeding_equals_whole_feeding(data):
    if data is None:  # a fixed case: every boundary inside a CRLF and inside a multi-byte char
        raw = "event: é\r\ndata: a\r\ndata: ü\r\n\r\n: c\r\n\r\n".encode()
        expected = [("é", "a\nü".encode()), (None, b"")]
        whole = feed_all(SSEDecoder(), [raw])
        assert pairs(whole) == expected
        for i in range(len(raw) + 1):
            assert triples(feed_all(SSEDecoder(), split(raw, [i]))) == triples(whole), i
        assert triples(feed_all(SSEDecoder(), [raw[i:i + 1] for i in range(len(raw))])) == triples(whole)
        return
    evs, raw = data.draw(streams())
    whole = feed_all(SSEDecoder(), [raw])
    pieces = split(raw, data.draw(cuts(len(raw))))
    assert b"".join(pieces) == raw
    assert triples(feed_all(SSEDecoder(), pieces)) == triples(whole)
    # byte by byte, the worst case for boundaries
    assert triples(feed_all(SSEDecoder(), [raw[i:i + 1] for i in range(len(raw))])) == triples(whole)
    # and what the events say
    assert pairs(whole) == [e.expected() for e in evs]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_relaying_raw_bytes_reparses_identically(data):
    evs, raw = data.draw(streams())
    first = feed_all(SSEDecoder(), split(raw, data.draw(cuts(len(raw)))))
    relayed = b"".join(e.raw for e in first)
    # raw bytes are what a client receives: whole events, each ending with a blank line
    assert all(e.raw.endswith(b"\n\n") for e in first)
    again_whole = feed_all(SSEDecoder(), [relayed])
    again_split = feed_all(SSEDecoder(), split(relayed, data.draw(cuts(len(relayed)))))
    assert pairs(again_whole) == pairs(first)
    assert pairs(again_split) == pairs(first)
    # relaying is idempotent: the relayed stream's events carry the same raw bytes
    assert [e.raw for e in again_whole] == [e.raw for e in first]


@settings(max_examples=200, deadline=None)
@given(evs=st.lists(events(), min_size=1, max_size=5), eol=st.sampled_from(EOLS), data=st.data())
def test_unterminated_last_event_is_returned_by_flush(evs, eol, data):
    text = "".join(eol.join(e.lines()) + eol + eol for e in evs[:-1])
    text += eol.join(evs[-1].lines()) + data.draw(st.sampled_from(["", eol]))  # no blank line after it
    raw = text.encode()
    got = feed_all(SSEDecoder(), split(raw, data.draw(cuts(len(raw)))))
    expected = [e.expected() for e in evs]
    last = evs[-1]
    if last.name is None and not last.data:  # a comment-only tail carries nothing
        assert pairs(got) in (expected, expected[:-1])
    else:
        assert pairs(got) == expected


@given(name=st.none() | name_text, payload=st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b))
def test_encode_event_round_trips(name, payload):
    (ev,) = feed_all(SSEDecoder(), [encode_event(name, payload)])
    assert (ev.event, ev.data) == (name, payload)


def test_pending_holds_only_an_incomplete_event():
    dec = SSEDecoder()
    assert dec.feed(b"data: 1\n\ndata: 2\r") == [SSEEvent(raw=b"data: 1\n\n", event=None, data=b"1")]
    assert dec.pending.startswith(b"data: 2")
    assert [e.data for e in dec.feed(b"\n\r\n")] == [b"2"]
    assert dec.pending == b"" and dec.flush() == []


def test_event_is_complete_when_its_blank_line_ends_in_cr():
    """A CR ends a line whether or not an LF follows, so an event whose blank line's CR is the
    last byte of a read is complete now; the relay must not hold it until more bytes come
    (for a CRLF upstream this is a read boundary between the final CR and LF)."""
    dec = SSEDecoder()
    assert pairs(dec.feed(b"data: 1\r\n\r")) == [(None, b"1")]
    assert dec.feed(b"\n") == []  # the LF of that CRLF is not a second blank line
    assert pairs(dec.feed(b"data: 2\r\r")) == [(None, b"2")]  # CR-only endings
    assert pairs(dec.feed(b"\ndata: 3\n\n")) == [(None, b"3")]
    assert dec.flush() == []


def test_flushed_tail_raw_has_exactly_one_blank_line():
    for tail in (b"data: x", b"data: x\n", b"data: x\r", b"data: x\r\n"):
        dec = SSEDecoder()
        assert dec.feed(tail) == []
        (ev,) = dec.flush()
        assert (ev.data, ev.raw) == (b"x", b"data: x\n\n"), tail
