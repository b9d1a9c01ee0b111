"""Burned-in text detection without learned weights (classical image processing).

Ultrasound and secondary-capture frames carry patient names, dates, settings
and labels as bright, flat glyphs (white, grey or a flat colour) on a dark or
flat bar. :func:`detect_text` finds them in one frame:

1. brightness = the maximum over colour channels, scaled to 0..255;
2. white top-hat: brightness minus its grey opening with a square of side
   ``2 * max_stroke + 1``, which keeps thin bright strokes (glyphs) and drops
   wide bright regions (tissue, bars);
3. candidate glyph pixels: top-hat above ``contrast`` grey levels (default 48);
4. connected components (8-connected) kept as glyphs when they are the size of
   a character (height ``min_height``..``max_height``, not a long thin line),
   are "flat" (most pixels near the component's brightest value: printed text
   is drawn in one colour, speckle peaks in the middle) and are stroke-like
   (fill of the bounding box below 0.9, or a narrow upright stroke at most a
   third as wide as tall: 'i', 'l', '1');
5. glyphs are joined into text lines: similar height, overlapping rows, a gap
   below ``1.5 x`` the taller height; a line is text when it holds at least two
   glyphs or one glyph wider than twice its height (joined characters);
6. boxes are the lines' bounding boxes padded by a quarter of their height.

Limits: dark text on a light background, very large (over ``max_height``), small
(under ``min_height``) or
single isolated characters, and text drawn over bright, textured tissue with
low contrast are not found; a bright, flat, text-like structure in the image
(calibration marks, ruler ticks, a needle echo) may be boxed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1), x1 and y1 exclusive."""


@dataclass(frozen=True)
class TextDetectorSettings:
    """Thresholds of :func:`detect_text` (pixel sizes are for the frame as stored)."""

    contrast: float = 48.0
    max_stroke: int = 4
    min_height: int = 6
    max_height: int = 40
    flatness: float = 0.35
    min_line_glyphs: int = 2
    background_std: float = 12.0


def _brightness(frame: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over channels, scaled to 0..255 uint8."""
    grey = frame
    if frame.ndim == 3:
        grey = frame[..., 0]
        for channel in range(1, frame.shape[-1]):
            grey = np.maximum(grey, frame[..., channel])
    if grey.dtype == np.uint8:
        return grey
    top = float(grey.max()) if grey.size else 0.0
    scale = 255.0 / top if top > 255 else 1.0
    return np.clip(grey.astype(np.float32) * scale, 0, 255).astype(np.uint8)


@dataclass
class _Glyph:
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def _opening(grey: np.ndarray, size: int) -> np.ndarray:
    """Grey opening with a ``size x size`` square, as four 1-D min/max passes."""
    low = ndimage.minimum_filter1d(ndimage.minimum_filter1d(grey, size, axis=0), size, axis=1)
    return ndimage.maximum_filter1d(ndimage.maximum_filter1d(low, size, axis=0), size, axis=1)


def _glyphs(grey: np.ndarray, settings: TextDetectorSettings) -> tuple[list[_Glyph], np.ndarray]:
    """Glyph-like components and the candidate (bright stroke) mask."""
    tophat = grey.astype(np.int16) - _opening(grey, 2 * settings.max_stroke + 1)
    candidates = tophat > settings.contrast
    labels, count = ndimage.label(candidates, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return [], candidates
    slices = ndimage.find_objects(labels)
    box = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in slices])
    h, w = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = (h >= settings.min_height) & (h <= settings.max_height) & (w <= 12 * h)
    # stroke-like: not a filled block, except narrow upright strokes ('i', 'l', '1', 'I')
    keep &= (areas < 0.9 * h * w) | (w * 3 <= h)
    glyphs = []
    for i in np.nonzero(keep)[0]:
        values = grey[slices[i]][labels[slices[i]] == i + 1]
        # printed glyphs are drawn in one colour: most pixels near the brightest one
        if np.count_nonzero(values >= int(values.max()) - 38) >= settings.flatness * values.size:
            glyphs.append(_Glyph(*map(int, box[i])))
    return glyphs, candidates


def _lines(glyphs: list[_Glyph]) -> list[list[_Glyph]]:
    """Group glyphs into text lines (union-find over neighbouring pairs)."""
    glyphs = sorted(glyphs, key=lambda g: g.x0)
    parent = list(range(len(glyphs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(glyphs):
        for j in range(i + 1, len(glyphs)):
            b = glyphs[j]
            tall = max(a.height, b.height)
            if b.x0 - a.x1 > 1.5 * tall:
                break  # sorted by x0: later glyphs start further right
            overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
            if overlap >= 0.5 * min(a.height, b.height) and tall <= 2.0 * min(a.height, b.height):
                parent[find(j)] = find(i)
    groups: dict[int, list[_Glyph]] = {}
    for i, g in enumerate(glyphs):
        groups.setdefault(find(i), []).append(g)
    return list(groups.values())


def _flat_background(grey: np.ndarray, candidates: np.ndarray, box: Box, pad: int,
                     settings: TextDetectorSettings) -> bool:
    """True when the pixels around the glyphs of ``box`` are flat (a bar or black), not tissue."""
    x0, y0, x1, y1 = box
    ys, xs = slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)
    near_glyph = ndimage.binary_dilation(candidates[ys, xs], iterations=2)
    background = grey[ys, xs][~near_glyph]
    return background.size == 0 or float(background.std()) <= settings.background_std


def detect_text(frame: np.ndarray, settings: TextDetectorSettings | None = None) -> list[Box]:
    """Boxes ``(x0, y0, x1, y1)`` of burned-in text lines in one ``(H, W)`` or ``(H, W, C)`` frame."""
    settings = settings or TextDetectorSettings()
    grey = _brightness(frame)
    height, width = grey.shape
    glyphs, candidates = _glyphs(grey, settings)
    boxes: list[Box] = []
    for line in _lines(glyphs):
        y0, y1 = min(g.y0 for g in line), max(g.y1 for g in line)
        x0, x1 = min(g.x0 for g in line), max(g.x1 for g in line)
        line_h = y1 - y0
        wide = len(line) == 1 and line[0].width >= 2 * line[0].height
        if len(line) < settings.min_line_glyphs and not wide:
            continue
        pad = max(1, line_h // 4)
        if not _flat_background(grey, candidates, (x0, y0, x1, y1), pad, settings):
            continue
        boxes.append((max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)))
    return boxes


def detect_text_frames(frames: np.ndarray, settings: TextDetectorSettings | None = None,
                       max_frames: int = 8) -> list[Box]:
    """Text boxes of ``(F, H, W[, C])`` frames: the union over up to ``max_frames`` evenly spaced frames."""
    count = frames.shape[0]
    picks = sorted({round(i) for i in np.linspace(0, count - 1, num=min(count, max_frames))})
    boxes: list[Box] = []
    for index in picks:
        for box in detect_text(frames[index], settings):
            if box not in boxes:
                boxes.append(box)
    return boxes


def boxes_mask(boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)`` mask, True inside any box."""
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask
