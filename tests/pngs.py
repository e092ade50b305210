"""A small PNG reader and writer for tests (standard library only: zlib and struct), enough
for Chromium's screenshots and segno's QR codes: 8-bit greyscale, RGB or RGBA, or 1-bit
greyscale, non-interlaced (PNG specification, ISO/IEC 15948, §6-§9)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 6: 4}  # colour type -> samples per pixel


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]  # unfiltered scanlines, 8 bits a sample
    dpi: float | None = None

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        row, c = self.rows[y], self.channels
        return tuple(row[x * c : x * c + c])

    def grey(self, x: int, y: int) -> int:
        """The pixel's luma (0-255), ignoring alpha."""
        p = self.pixel(x, y)
        if self.channels < 3:
            return p[0]
        return (299 * p[0] + 587 * p[1] + 114 * p[2]) // 1000


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == SIGNATURE, "not a PNG"
    out, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + length]
        (crc,) = struct.unpack(">I", data[i + 8 + length : i + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        out.append((kind, body))
        i += 12 + length
    return out


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def read(data: bytes) -> Image:
    chunks = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert chunks[0][0] == b"IHDR" and interlace == 0 and colour in _CHANNELS
    assert depth == 8 or (depth == 1 and colour == 0), f"unsupported depth {depth}"
    channels = _CHANNELS[colour]
    dpi = None
    for kind, body in chunks:
        if kind == b"pHYs":
            ppu_x, _, unit = struct.unpack(">IIB", body)
            dpi = ppu_x * 0.0254 if unit == 1 else None
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = (width * channels * depth + 7) // 8
    bpp = max(1, channels * depth // 8)
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            line[i] = (line[i] + (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]) & 0xFF
        prev = line
        if depth == 1:
            rows.append(bytes(255 if line[x // 8] >> (7 - x % 8) & 1 else 0 for x in range(width)))
        else:
            rows.append(bytes(line))
    return Image(width, height, channels, rows, dpi)


def write(image: Image) -> bytes:
    """An 8-bit PNG of ``image`` (no filtering), e.g. a crop to look at."""
    colour = {1: 0, 3: 2, 4: 6}[image.channels]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", image.width, image.height, 8, colour, 0, 0, 0)
    body = zlib.compress(b"".join(b"\x00" + r for r in image.rows))
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def crop(image: Image, top: int, height: int) -> Image:
    rows = image.rows[top : top + height]
    return Image(image.width, len(rows), image.channels, rows)
