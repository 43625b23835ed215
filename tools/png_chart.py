"""A small bar chart written as a PNG with the standard library only (zlib + struct).

Enough for a report: grouped bars per period, a zero line, a y-axis maximum, period labels and
a legend, drawn with a 3x5 pixel font. Not a plotting library, and not meant to become one.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (33, 33, 33)
GREY: Color = (200, 200, 200)
PALETTE: tuple[Color, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
)

# 3x5 glyphs, one string of 15 bits per character, read row by row.
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001010010010", "8": "111101111101111",
    "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111",
    "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101",
    "L": "100100100100111", "M": "101111111101101", "N": "110101101101101",
    "O": "010101101101010", "P": "110101110100100", "Q": "010101101110011",
    "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101",
    "X": "101101010101101", "Y": "101101010010010", "Z": "111001010100111",
    "-": "000000111000000", "$": "011110010011110", ",": "000000000010100",
    ".": "000000000000010", ":": "000010000010000", "_": "000000000000111",
    "/": "001001010100100", "%": "101001010100101", " ": "000000000000000",
}  # fmt: skip


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[int]


class Canvas:
    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self._rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = sorted((max(0, x0), min(self.width, x1)))
        y0, y1 = sorted((max(0, y0), min(self.height, y1)))
        run = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            self._rows[y][x0 * 3 : x1 * 3] = run

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 2) -> int:
        """Draw ``text`` (upper-cased) with its top-left corner at (x, y); return its width."""
        cursor = x
        for char in text.upper():
            glyph = _FONT.get(char, _FONT[" "])
            for index, bit in enumerate(glyph):
                if bit == "1":
                    gx, gy = cursor + (index % 3) * scale, y + (index // 3) * scale
                    self.rect(gx, gy, gx + scale, gy + scale, color)
            cursor += 4 * scale
        return cursor - x

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self._rows)  # filter type 0 per row
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 4 * scale


def bar_chart(
    title: str,
    periods: Sequence[str],
    series: Sequence[Series],
    *,
    value_label: str = "",
    plot_height: int = 240,
) -> bytes:
    """A grouped bar chart: one group per period, one bar per series; negatives go down."""
    if any(len(s.values) != len(periods) for s in series):
        raise ValueError("every series needs one value per period")
    bar, gap = 10, 14
    longest = max((text_width(p, scale=1) for p in periods), default=0)
    group = max(max(1, len(series)) * bar + gap, longest + 6)
    left, top = 16 + text_width(value_label or "0"), 40
    legend_height = 20 * max(1, len(series))
    width = max(left + group * max(1, len(periods)) + 20, 24 + text_width(title))
    height = top + plot_height + 30 + legend_height
    canvas = Canvas(width, height)
    canvas.text(10, 10, title)

    values = [v for s in series for v in s.values]
    high, low = max([0, *values]), min([0, *values])
    span = (high - low) or 1
    zero_y = top + round(plot_height * high / span)

    canvas.rect(left - 2, top, left, top + plot_height, GREY)
    canvas.rect(left, zero_y, width - 10, zero_y + 1, BLACK)
    if value_label:
        canvas.text(8, top, value_label, scale=2)
    for p_index, period in enumerate(periods):
        x = left + gap // 2 + p_index * group
        for s_index, one in enumerate(series):
            value = one.values[p_index]
            size = round(plot_height * abs(value) / span)
            y0, y1 = (zero_y - size, zero_y) if value >= 0 else (zero_y + 1, zero_y + 1 + size)
            color = PALETTE[s_index % len(PALETTE)]
            canvas.rect(x + s_index * bar, y0, x + (s_index + 1) * bar - 1, y1, color)
        canvas.text(x, top + plot_height + 8, period, scale=1)
    for s_index, one in enumerate(series):
        y = top + plot_height + 30 + s_index * 20
        canvas.rect(10, y, 22, y + 12, PALETTE[s_index % len(PALETTE)])
        canvas.text(30, y + 1, one.label)
    return canvas.png()
