"""Pictures of what ``spinekit measure`` measured on an image (``--overlay DIR``, report).

Everything drawn comes from the :class:`~spinekit.clinical.views.Geometry` the numbers
were computed from (nothing is re-derived here), scaled with the image so its longest side
is at most ``max_side``; a dark text strip below the picture holds the numbers and the
flags. Drawing uses Pillow, colours are the Okabe-Ito palette of
:mod:`spinekit.reports.overlay`:

- AP: instance outlines (thin, grey), every vertebra's four corners as a quadrilateral
  with its upper and lower endplates, its level at the image-left side; the upper and
  lower end vertebrae of each Cobb curve outlined thick in the curve's colour (curve 1
  orange, 2 sky blue, 3 green) and the three angles with their end vertebrae in the strip.
- Lateral: outlines, endplates of every level (L1 upper and L5 lower, the lordosis
  endplates, thick), level and middle body height next to each body; lordosis in the strip.
- Ultrasound: facet-joint outlines, each facet's smoothed dorsal contour, the needle target
  (a cross in a circle, thick for the image's target) and the annotated target (an x);
  presence, trust and the target error in the strip.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spinekit.clinical.views import Geometry
from spinekit.geometry import mask_to_polygons
from spinekit.masks import CropMask
from spinekit.reports.overlay import OKABE_ITO, load_font, save_overlay, to_rgb8

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Colour = tuple[int, int, int]

OUTLINE: Colour = (150, 150, 150)
ENDPLATE: Colour = OKABE_ITO[3]  # yellow
BODY: Colour = (225, 225, 225)
TARGET: Colour = OKABE_ITO[5]  # vermillion
EXPERT: Colour = OKABE_ITO[2]  # bluish green
CURVES: tuple[Colour, ...] = (OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[2])
STRIP_BG: Colour = (28, 28, 30)
STRIP_FG: Colour = (235, 235, 235)


class _Canvas:
    """An RGB picture with the image-to-picture scale and line widths."""

    def __init__(self, image: np.ndarray, max_side: int | None) -> None:
        rgb = to_rgb8(image)
        height, width = rgb.shape[:2]
        longest = max(height, width)
        self.scale = 1.0 if not max_side or longest <= max_side else max_side / longest
        size = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        pic = Image.fromarray(rgb)
        self.pic = pic if size == pic.size else pic.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        self.draw = ImageDraw.Draw(self.pic)
        self.line = max(1, round(max(size) / 400))
        self.font = load_font(int(np.clip(round(max(size) / 45), 11, 18)))

    def xy(self, points: np.ndarray) -> list[tuple[float, float]]:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * self.scale
        return [(float(x), float(y)) for x, y in pts]

    def polyline(self, points: np.ndarray, colour: Colour, width: int, closed: bool = False) -> None:
        pts = self.xy(points)
        if len(pts) >= 2:
            self.draw.line([*pts, pts[0]] if closed else pts, fill=colour, width=width, joint="curve")

    def text(self, xy: tuple[float, float], text: str, colour: Colour) -> None:
        x, y = xy[0] * self.scale, xy[1] * self.scale
        box = self.draw.textbbox((x, y), text, font=self.font, anchor="rm")
        self.draw.rectangle(box, fill=(0, 0, 0))
        self.draw.text((x, y), text, fill=colour, font=self.font, anchor="rm")

    def mark(self, point: tuple[float, float], colour: Colour, kind: str, big: bool) -> None:
        x, y = point[0] * self.scale, point[1] * self.scale
        r = (7 if big else 5) * self.line + 2
        width = self.line + (1 if big else 0)
        if kind == "target":
            self.draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=width)
            self.draw.line((x - r, y, x + r, y), fill=colour, width=width)
            self.draw.line((x, y - r, x, y + r), fill=colour, width=width)
        else:
            self.draw.line((x - r, y - r, x + r, y + r), fill=colour, width=width)
            self.draw.line((x - r, y + r, x + r, y - r), fill=colour, width=width)


def _outline(canvas: _Canvas, mask: CropMask, colour: Colour, width: int) -> None:
    if mask.empty:
        return
    for ring in mask_to_polygons(mask.crop.astype(np.uint8), min_area=2.0, tolerance=0.7):
        canvas.polyline(ring + np.array([mask.left, mask.top]), colour, width, closed=True)


def _quad(corners: np.ndarray) -> np.ndarray:
    """Corners ``(4, 2)`` (upper pair, lower pair) as a ring: upper0, upper1, lower1, lower0."""
    return corners[[0, 1, 3, 2]]


def _draw_vertebrae(canvas: _Canvas, geom: Geometry, thick: set[str]) -> None:
    for k, corners in enumerate(geom.corners):
        if not np.all(np.isfinite(corners)):
            continue
        canvas.polyline(_quad(corners), BODY, canvas.line, closed=True)
        level = geom.levels[k] if k < len(geom.levels) else None
        for pair, name in ((corners[:2], "upper"), (corners[2:], "lower")):
            width = canvas.line * (3 if f"{level}:{name}" in thick else 1) + 1
            canvas.polyline(pair, ENDPLATE, width)
        left = corners[:, 0].min() - 4.0 / canvas.scale
        canvas.text((float(left), float(corners[:, 1].mean())), str(level or f"#{k}"), STRIP_FG)


def _draw_ap(canvas: _Canvas, geom: Geometry) -> None:
    _draw_vertebrae(canvas, geom, set())
    tags: dict[int, list[int]] = {}
    curves = list(zip(geom.cobb, CURVES, strict=False))
    for k, ((_, upper, lower), colour) in reversed(list(enumerate(curves))):
        for idx in (upper, lower):
            if 0 <= idx < len(geom.corners):
                canvas.polyline(_quad(geom.corners[idx]), colour, canvas.line * 3 + 1, closed=True)
                tags.setdefault(idx, []).append(k)
    for idx, curve_ids in tags.items():
        corners = geom.corners[idx]
        x = float(corners[:, 0].max()) + 6.0 / canvas.scale
        for j, k in enumerate(sorted(curve_ids)):
            shift = (28.0 * (j + 1)) / canvas.scale
            canvas.text((x + shift, float(corners[:, 1].mean())), f"C{k + 1}", CURVES[k])


def _draw_lateral(canvas: _Canvas, geom: Geometry) -> None:
    _draw_vertebrae(canvas, geom, {"L1:upper", "L5:lower"})
    result = geom.lateral
    if result is None:
        return
    for level, ep in result.endplates.items():
        middle = result.body_heights.get(level, {}).get("middle")
        if middle is not None:
            right = ep.corners[:, 0].max() + 4.0 / canvas.scale + 60.0 / canvas.scale
            canvas.text((float(right), float(ep.corners[:, 1].mean())), f"{middle:.1f}", STRIP_FG)


def _draw_ultrasound(canvas: _Canvas, geom: Geometry) -> None:
    for k, facet in enumerate(geom.facets):
        contour = facet.target.contour
        if contour is not None:
            canvas.polyline(contour.points(), ENDPLATE, canvas.line + 1)
        if facet.target.point is not None:
            canvas.mark(facet.target.point, TARGET, "target", big=k == geom.primary)
    for point in geom.expert_targets:
        canvas.mark(point, EXPERT, "expert", big=True)


def _fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None or value == "":
        return "-"
    try:
        return f"{float(value):.{digits}f}{unit}"
    except (TypeError, ValueError):
        return str(value)


def summary_lines(row: dict[str, Any]) -> list[str]:
    """The text lines under the picture: the measured values of ``row`` and its flags."""
    view = row.get("view")
    lines = [f"{row.get('image')}  view {view or 'undetermined'}"]
    if view == "ap":
        ends = str(row.get("cobb_end_vertebrae") or "").split("; ")
        for k in range(3):
            end = ends[k] if k < len(ends) else ""
            lines.append(f"Cobb {k + 1}: {_fmt(row.get(f'cobb_{k + 1}_deg'), 1, ' deg')}  {end}")
    elif view == "lateral":
        unit = row.get("unit") or "px"
        lines.append(f"lordosis L1-L5 {_fmt(row.get('lordosis_L1_L5_deg'), 1, ' deg')}, L1-S1 "
                     f"{_fmt(row.get('lordosis_L1_S1_deg'), 1, ' deg')}; body middle heights in {unit}")
    elif view == "ultrasound":
        lines.append(f"facet joint {'present' if row.get('facet_present') else 'absent'}, "
                     f"{'trusted' if row.get('trusted') else 'not trusted'}; target "
                     f"({_fmt(row.get('target_x_px'))}, {_fmt(row.get('target_y_px'))}) px, "
                     f"error {_fmt(row.get('target_error_mm'), 2, ' mm')} "
                     f"({_fmt(row.get('target_error_px'), 1, ' px')})")
    flags = str(row.get("flags") or "")
    if flags:
        lines += [f"flag: {f}" for f in flags.split("; ")][:4]
    return lines


def _wrap(lines: Sequence[str], width: int, probe: ImageDraw.ImageDraw, font: Font) -> list[str]:
    """``lines`` broken at spaces so each fits ``width`` px (a single long word is cut)."""
    out: list[str] = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            trial = f"{current} {word}" if current else word
            if current and probe.textlength(trial, font=font) > width:
                out.append(current)
                current = "  " + word
            else:
                current = trial
        out.append(current)
    return out


def _strip(width: int, lines: Sequence[str], font: Font) -> np.ndarray:
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(lines, max(width - 12, 40), probe, font)
    row_h = int(probe.textbbox((0, 0), "Ag", font=font)[3]) + 6
    strip = Image.new("RGB", (width, row_h * len(lines) + 6), STRIP_BG)
    draw = ImageDraw.Draw(strip)
    for k, text in enumerate(lines):
        draw.text((6, 4 + k * row_h), text, fill=STRIP_FG, font=font)
    return np.asarray(strip)


def draw_measurement(image: np.ndarray, geometry: Geometry, row: dict[str, Any], *,
                     max_side: int | None = 1024) -> np.ndarray:
    """Picture ``(h + strip, w, 3)`` uint8 RGB of one measured image (module docstring).

    ``image``: ``(H, W)`` or ``(H, W, 3)`` pixels; ``geometry`` and ``row``: what
    :func:`spinekit.clinical.measure.measure_images` gave for it.
    """
    canvas = _Canvas(image, max_side)
    for mask in geometry.masks:
        _outline(canvas, mask, OUTLINE, canvas.line)
    if geometry.view == "ap":
        _draw_ap(canvas, geometry)
    elif geometry.view == "lateral":
        _draw_lateral(canvas, geometry)
    elif geometry.view == "ultrasound":
        _draw_ultrasound(canvas, geometry)
    strip = _strip(canvas.pic.size[0], summary_lines(row), canvas.font)
    return np.vstack([np.asarray(canvas.pic), strip])


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def overlay_name(file_name: str, taken: set[str]) -> str:
    """A safe PNG file name for an image's ``file_name``: its last path part without the
    extension, characters other than letters, digits, ``.``, ``_``, ``-`` replaced by
    ``_``, at most 120 characters; ``-2``, ``-3``... when ``taken`` (lower-case names
    already used) holds it. The name is added to ``taken``."""
    parts = [p for p in re.split(r"[\\/]+", file_name) if p not in ("", ".", "..")]
    last = parts[-1] if parts else ""
    stem = last.rsplit(".", 1)[0] if "." in last else last
    stem = _UNSAFE.sub("_", stem).strip("._")[:120] or "image"
    name, k = f"{stem}.png", 1
    while name.lower() in taken:
        k += 1
        name = f"{stem}-{k}.png"
    taken.add(name.lower())
    return name


def save_measurement(folder: str | Path, name: str, picture: np.ndarray) -> Path:
    """Write ``picture`` as ``folder/name`` (PNG, atomically) and return the path."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_overlay(path, picture)
    return path
