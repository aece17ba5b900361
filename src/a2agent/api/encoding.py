"""Request bodies sent with ``Content-Encoding: gzip`` or ``zstd``, decoded with a size bound
(a small compressed body must not expand past the body limit: decompression bombs)."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from a2agent.api.errors import ApiError


def decompress(encoding: str, raw: bytes, limit: int) -> bytes:
    """The decoded body; ``OverflowError`` past ``limit`` bytes, ``ValueError`` for an unknown
    encoding ("… not supported") or a corrupt body ("… not valid …")."""
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 47 if encoding != "deflate" else 15  # 47: gzip or zlib header, auto-detected
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(raw, limit + 1)
        except zlib.error:
            raise ValueError(f"Request body is not valid {encoding} data.") from None
        if len(out) > limit or d.unconsumed_tail:
            raise OverflowError
        return out
    if encoding == "zstd":
        import zstandard

        try:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            out = reader.read(limit + 1)
            while len(out) <= limit:
                more = reader.read(limit + 1 - len(out))
                if not more:
                    break
                out += more
        except zstandard.ZstdError:
            raise ValueError("Request body is not valid zstd data.") from None
        if len(out) > limit:
            raise OverflowError
        return out
    raise ValueError(f"Content-Encoding {encoding!r} is not supported: send gzip, zstd or no encoding.")


def decode_body(request: Request, raw: bytes, limit: int) -> bytes:
    """A ``Content-Encoding: zstd`` / ``gzip`` body decoded (Codex compresses under some
    configurations), never past ``limit`` bytes."""
    encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    try:
        out = decompress(encoding, raw, limit)
    except OverflowError:
        raise ApiError(413, f"Request body too large: the limit is {limit} bytes (decoded).",
                       code="request_too_large") from None
    except ValueError as exc:
        raise ApiError(400 if "not valid" in str(exc) else 415, str(exc), code="unsupported_encoding") from None
    return out
