"""Request bodies sent with ``Content-Encoding: gzip`` or ``zstd``, decoded with a size bound
(a small compressed body must not expand past the body limit: decompression bombs)."""

from __future__ import annotations

import zlib


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
