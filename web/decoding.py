"""`Content-Encoding` on request bodies: gzip, deflate and zstd, with the decompressed size capped.

The compressed body is already capped by MAX_BODY_BYTES; what it expands to is capped here,
chunk by chunk, so a decompression bomb (a gigabyte of zeros is ~1 MB of gzip) costs at most
`limit` bytes of memory and stops as soon as it passes the limit.
"""

from __future__ import annotations

import zlib

import zstandard

CHUNK = 64 * 1024
MAX_PARTS = 64  # gzip members or zstd frames in one body: each costs a decoder of its own
ZSTD_FEED = 64  # compressed bytes per call: at most ~21 RLE blocks (2.7 MiB) of output
ENCODINGS = ("gzip", "x-gzip", "deflate", "zstd", "identity")


class UnsupportedEncoding(ValueError):
    """A Content-Encoding this service does not decode (415)."""


class CorruptBody(ValueError):
    """The body does not decompress with the encoding it names (400)."""


class DecompressedTooLarge(ValueError):
    """The body expands past the limit (413)."""


def check_encoding(encoding: str | None) -> None:
    """Raise UnsupportedEncoding for an encoding `decode` would refuse, before reading."""
    name = (encoding or "identity").strip().lower()
    if name not in ENCODINGS:
        raise UnsupportedEncoding(
            f"Content-Encoding {name!r} is not supported; use gzip, deflate, zstd or none"
        )


def decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before compression; at most `limit` bytes of it."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name in ("gzip", "x-gzip"):
        return _inflate(zlib.decompressobj(wbits=31), body, limit, "gzip")
    if name == "deflate":  # RFC 9110's deflate is zlib-wrapped; some clients send it raw
        wrapped = body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2]) % 31 == 0
        return _inflate(zlib.decompressobj(wbits=15 if wrapped else -15), body, limit, "deflate")
    if name == "zstd":
        return _unzstd(body, limit)
    raise UnsupportedEncoding(
        f"Content-Encoding {name!r} is not supported; use gzip, deflate, zstd or none"
    )


def _inflate(inflater: zlib._Decompress, body: bytes, limit: int, name: str) -> bytes:
    out = bytearray()
    pending = body
    members = 1
    try:
        while True:
            chunk = inflater.decompress(pending, CHUNK)
            out += chunk
            if len(out) > limit:
                raise DecompressedTooLarge(f"body decompresses to more than {limit} bytes")
            pending = inflater.unconsumed_tail
            if inflater.eof:
                if not (inflater.unused_data and name == "gzip"):
                    break
                members += 1  # another gzip member follows
                if members > MAX_PARTS:
                    raise CorruptBody(f"body holds more than {MAX_PARTS} gzip members")
                pending = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
            elif not pending and not chunk:
                break  # all input taken and nothing more comes out
    except zlib.error as error:
        raise CorruptBody(f"body is not valid {name} ({error})") from None
    if not inflater.eof:
        raise CorruptBody(f"body is not valid {name} (it ends before the stream does)")
    return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    """Fed a few bytes at a time: zstd has no output cap per call, but a few input bytes can
    complete only a few 128 KiB blocks, so memory stays near `limit`. Frames follow frames."""
    out = bytearray()
    view = memoryview(body)
    position = frames = 0
    inflater = zstandard.ZstdDecompressor().decompressobj()
    try:
        while position < len(view):
            piece = view[position : position + ZSTD_FEED]
            position += len(piece)
            out += inflater.decompress(piece)
            if len(out) > limit:
                raise DecompressedTooLarge(f"body decompresses to more than {limit} bytes")
            if inflater.eof:  # a frame ended; what it did not use starts the next one
                position -= len(inflater.unused_data)
                frames += 1
                if position < len(view):
                    if frames >= MAX_PARTS:
                        raise CorruptBody(f"body holds more than {MAX_PARTS} zstd frames")
                    inflater = zstandard.ZstdDecompressor().decompressobj()
    except zstandard.ZstdError as error:
        raise CorruptBody(f"body is not valid zstd ({error})") from None
    if not inflater.eof:
        raise CorruptBody("body is not valid zstd (it ends before the frame does)")
    return bytes(out)
