"""Text rasterised once with OpenCV's Hershey fonts, then composited on every frame as an alpha mask.

The Hershey fonts cover printable ASCII only, so other characters are folded to their closest ASCII form
(accents dropped) or shown as '?'. Long prompts are wrapped to the frame width and cut to a few lines,
ending with '...' where cut.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class TextOverlay:
    """An overlay placed at (x, y): `text` and `plate` are alpha masks in 0..1 of the same shape."""

    x: int
    y: int
    text: np.ndarray
    plate: np.ndarray

    @property
    def height(self) -> int:
        return int(self.text.shape[0])

    @property
    def width(self) -> int:
        return int(self.text.shape[1])


def to_ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", " ".join(text.split()))
    out = []
    for char in folded:
        if unicodedata.combining(char):
            continue
        out.append(char if 32 <= ord(char) < 127 else "?")
    return "".join(out)


def _font() -> int:
    import cv2

    return int(cv2.FONT_HERSHEY_SIMPLEX)


def _text_width(text: str, scale: float, thickness: int) -> int:
    import cv2

    (width, _), _ = cv2.getTextSize(text, _font(), scale, thickness)
    return int(width)


def wrap(text: str, max_width: int, scale: float, thickness: int, max_lines: int) -> list[str]:
    lines: list[str] = []
    current = ""
    words = to_ascii(text).split(" ")
    for word in words:
        while _text_width(word, scale, thickness) > max_width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and _text_width(word[:cut], scale, thickness) > max_width:
                cut -= 1
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}" if current else word
        if _text_width(candidate, scale, thickness) <= max_width:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and _text_width(last + "...", scale, thickness) > max_width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "..."]
    return lines


def rasterise(lines: list[str], scale: float, thickness: int, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased text mask and a rounded backing plate, both float32 alpha in 0..1."""
    import cv2

    font = _font()
    (_, line_height), baseline = cv2.getTextSize("Ag", font, scale, thickness)
    step = line_height + baseline + max(2, padding // 2)
    width = max(_text_width(line, scale, thickness) for line in lines) + 2 * padding
    height = step * len(lines) + 2 * padding - max(2, padding // 2)
    canvas = np.zeros((height, width), dtype=np.uint8)
    for number, line in enumerate(lines):
        origin = (padding, padding + number * step + line_height)
        cv2.putText(canvas, line, origin, font, scale, 255, thickness, cv2.LINE_AA)
    plate = np.zeros_like(canvas)
    radius = max(2, padding)
    cv2.rectangle(plate, (radius, 0), (width - 1 - radius, height - 1), 255, -1)
    cv2.rectangle(plate, (0, radius), (width - 1, height - 1 - radius), 255, -1)
    for cx, cy in ((radius, radius), (width - 1 - radius, radius), (radius, height - 1 - radius),
                   (width - 1 - radius, height - 1 - radius)):  # fmt: skip
        cv2.circle(plate, (cx, cy), radius, 255, -1, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0, plate.astype(np.float32) / 255.0


def caption(prompt: str, frame_width: int, frame_height: int, max_lines: int = 3) -> TextOverlay:
    """The prompt as a caption near the top of the frame, centred, on a dark plate."""
    unit = min(frame_width, frame_height) / 576.0
    scale = 0.75 * unit
    thickness = max(1, round(2 * unit))
    padding = max(3, round(10 * unit))
    margin = max(2, round(16 * unit))
    lines = wrap(prompt, frame_width - 2 * margin - 2 * padding, scale, thickness, max_lines)
    text, plate = rasterise(lines, scale, thickness, padding)
    height = min(text.shape[0], frame_height // 3)
    text, plate = text[:height], plate[:height]
    x = (frame_width - text.shape[1]) // 2
    y = max(0, round(0.04 * frame_height))
    return TextOverlay(x=x, y=y, text=text, plate=plate)


def label(text: str, frame_width: int, frame_height: int) -> TextOverlay:
    """A one-line label (the watermark) at the origin; its user places it."""
    unit = min(frame_width, frame_height) / 576.0
    scale = 0.6 * max(unit, 0.45)
    thickness = max(1, round(1.6 * unit))
    padding = max(2, round(6 * unit))
    mask, plate = rasterise([to_ascii(text)], scale, thickness, padding)
    return TextOverlay(x=0, y=0, text=mask, plate=plate)
