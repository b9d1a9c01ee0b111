"""Prediction vs expert overlays and a per-image quality score.

Detections are COCO result dicts in original image coordinates
(``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score`` and
optionally ``segmentation`` as compressed RLE). Expert instances are the
dataset's COCO annotations (``segmentation`` = list of flat polygons, or RLE
for crowd regions). Drawing uses Pillow (fast, no matplotlib).

Style: expert instances are solid outlines, predictions translucent filled
masks with a dashed outline and a "name 0.93" label, both in the class colour
(Okabe-Ito palette, colour-blind safe, indexed by category id); a legend strip
is appended below the picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spinekit.geometry import as_points, mask_to_polygons
from spinekit.io.atomic import atomic_path
from spinekit.io.images import to_uint8

OKABE_ITO: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 158, 115),  # bluish green
    (240, 228, 66),  # yellow
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
)
"""Okabe-Ito colours without black (invisible on dark medical images)."""

MATCH_IOU = 0.5
FILL_ALPHA = 0.35
_LEGEND_BG = (28, 28, 30)
_LEGEND_FG = (235, 235, 235)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def class_colour(category_id: int) -> tuple[int, int, int]:
    """RGB colour of a category id (ids 1, 2, ... take the palette in order)."""
    return OKABE_ITO[(int(category_id) - 1) % len(OKABE_ITO)]


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Gray ``(H, W)`` / ``(H, W, 1)`` or colour ``(H, W, 3|4)`` of any integer dtype -> RGB uint8.

    Non-uint8 images are scaled so their maximum maps to 255 (see :func:`to_uint8`).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (1, 4):
        arr = arr[..., 0] if arr.shape[2] == 1 else arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    arr8 = to_uint8(arr)
    if arr8.ndim == 2:
        arr8 = np.repeat(arr8[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr8)


@lru_cache(maxsize=16)
def load_font(size: int) -> Font:
    """PIL's default font at ``size`` px (the bitmap font when Pillow has no FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _rle(segmentation: Mapping[str, Any]) -> dict[str, Any]:
    """A compressed RLE dict usable by faster_coco_eval (str counts kept as they are)."""
    from faster_coco_eval.core import mask as mask_api

    size = [int(v) for v in segmentation["size"]]
    counts = segmentation["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        out: dict[str, Any] = mask_api.frPyObjects(dict(segmentation), size[0], size[1])
        return out
    return {"size": size, "counts": counts}


def _decode(segmentation: Mapping[str, Any]) -> np.ndarray:
    """Decode an RLE to an ``(H, W)`` uint8 0/1 mask."""
    from faster_coco_eval.core import mask as mask_api

    return np.asarray(mask_api.decode(_rle(segmentation)), dtype=np.uint8)


def _shrink_mask(mask: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Resize an ``(H, W)`` 0/1 mask to ``(out_h, out_w)`` bool (area-weighted, >= 50 %)."""
    if mask.shape == (out_h, out_w):
        return mask > 0
    pic = Image.fromarray((mask > 0).astype(np.uint8) * 255)
    return np.asarray(pic.resize((out_w, out_h), Image.Resampling.BILINEAR)) >= 128


def _polygon_rings(segmentation: Any) -> list[np.ndarray]:
    """Flat COCO polygons -> list of ``(N, 2)`` rings with >= 3 points."""
    if not isinstance(segmentation, list):
        return []
    rings = [as_points(p) for p in segmentation if isinstance(p, list) and len(p) >= 6]
    return [r for r in rings if len(r) >= 3]


def _box_ring(bbox: Sequence[float]) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def _closed_line(draw: ImageDraw.ImageDraw, ring: np.ndarray, colour: tuple[int, int, int],
                 width: int) -> None:
    pts = [(float(x), float(y)) for x, y in ring]
    draw.line([*pts, pts[0]], fill=colour, width=width, joint="curve")


def _dashed_ring(draw: ImageDraw.ImageDraw, ring: np.ndarray, colour: tuple[int, int, int],
                 width: int, dash: float = 5.0, gap: float = 3.0) -> None:
    """Draw a closed ``(N, 2)`` ring as a dashed line (resampled at 1 px steps)."""
    closed = np.vstack([ring, ring[:1]]).astype(np.float64)
    steps = np.hypot(*np.diff(closed, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    if arc[-1] <= 0:
        return
    s = np.arange(0.0, arc[-1] + 1.0, 1.0)
    xs, ys = np.interp(s, arc, closed[:, 0]), np.interp(s, arc, closed[:, 1])
    on = (s % (dash + gap)) < dash
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= 2:
            draw.line(list(zip(xs[start:stop].tolist(), ys[start:stop].tolist(), strict=True)),
                      fill=colour, width=width)


def _text_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma >= 110 else (255, 255, 255)


def _label(draw: ImageDraw.ImageDraw, name: str, score: float, x: float, y: float,
           colour: tuple[int, int, int], font: Font, limits: tuple[int, int]) -> None:
    """A tag "name 0.93" just above point ``(x, y)``, kept inside ``limits`` ``(w, h)``.

    ``draw`` works on an RGBA layer: the tag is slightly translucent, the text opaque.
    """
    score_text = f"{score:.2f}"
    gap = max(3, int(font.size) // 3) if isinstance(font, ImageFont.FreeTypeFont) else 4
    name_w = draw.textlength(name, font=font)
    left, top, right, bottom = draw.textbbox((0, 0), f"{name}{score_text}", font=font)
    tw, th = right - left + gap + 4, bottom - top + 3
    tx = min(max(0.0, x), max(0.0, limits[0] - tw))
    ty = y - th if y - th >= 0 else min(y, max(0.0, limits[1] - th))
    draw.rectangle((tx, ty, tx + tw, ty + th), fill=(*colour, 205))
    ink = (*_text_colour(colour), 255)
    draw.text((tx + 2 - left, ty + 1.5 - top), name, fill=ink, font=font)
    draw.text((tx + 2 - left + name_w + gap, ty + 1.5 - top), score_text, fill=ink, font=font)


def _draw_labels(pic: Image.Image, outlines: Outlines,
                 names: Mapping[int, str], scale: float, font: Font) -> Image.Image:
    """Composite the detections' tags (translucent RGBA layer) onto ``pic``; returns RGB."""
    if not outlines:
        return pic
    layer = Image.new("RGBA", pic.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for det, _ in outlines:
        category = int(det["category_id"])
        x, y = float(det["bbox"][0]) * scale, float(det["bbox"][1]) * scale
        _label(draw, names.get(category, str(category)), float(det["score"]), x, y,
               class_colour(category), font, pic.size)
    return Image.alpha_composite(pic.convert("RGBA"), layer).convert("RGB")


def _sizes(height: int, width: int, max_side: int | None) -> tuple[float, int, int]:
    scale = 1.0 if not max_side or max(height, width) <= max_side else max_side / max(height, width)
    return scale, max(1, round(width * scale)), max(1, round(height * scale))


def _visible(detections: Sequence[Mapping[str, Any]], threshold: float) -> list[Mapping[str, Any]]:
    """Detections at or above ``threshold``, lowest score first (best drawn on top)."""
    kept = [d for d in detections if float(d.get("score", 0.0)) >= threshold]
    return sorted(kept, key=lambda d: float(d.get("score", 0.0)))


Outlines = list[tuple[Mapping[str, Any], list[np.ndarray]]]
"""Each drawn detection with its outline rings in picture coordinates."""


def _prediction_layer(base: np.ndarray, dets: Sequence[Mapping[str, Any]],
                      scale: float) -> tuple[np.ndarray, Outlines]:
    """Blend the masks into ``base`` ``(h, w, 3)`` uint8; return it and each detection's rings."""
    out_h, out_w = base.shape[:2]
    work = base.astype(np.float32)
    outlines: Outlines = []
    for det in dets:
        seg = det.get("segmentation")
        rings: list[np.ndarray] = []
        if isinstance(seg, Mapping) and "counts" in seg:
            small = _shrink_mask(_decode(seg), out_w, out_h)
            colour = np.array(class_colour(int(det["category_id"])), dtype=np.float32)
            work[small] = work[small] * (1.0 - FILL_ALPHA) + colour * FILL_ALPHA
            rings = mask_to_polygons(small.astype(np.uint8), min_area=2.0, tolerance=0.7)
        if not rings and det.get("bbox") is not None:
            rings = [_box_ring(det["bbox"]) * scale]
        outlines.append((det, rings))
    return np.clip(np.rint(work), 0, 255).astype(np.uint8), outlines


def _expert_rings(ann: Mapping[str, Any], scale: float, out_w: int, out_h: int) -> list[np.ndarray]:
    seg = ann.get("segmentation")
    if isinstance(seg, Mapping) and "counts" in seg:
        return mask_to_polygons(_shrink_mask(_decode(seg), out_w, out_h).astype(np.uint8),
                                min_area=2.0, tolerance=0.7)
    rings = _polygon_rings(seg)
    if not rings and ann.get("bbox") is not None:
        rings = [_box_ring(ann["bbox"])]
    return [r * scale for r in rings]


def draw_overlay(
    image: np.ndarray,
    *,
    detections: Sequence[Mapping[str, Any]] = (),
    expert: Sequence[Mapping[str, Any]] = (),
    names: Mapping[int, str],
    score_threshold: float = 0.5,
    max_side: int | None = 768,
) -> np.ndarray:
    """Picture of one image with expert outlines, predicted masks and a legend strip.

    ``image`` is ``(H, W)`` or ``(H, W, 3)``, uint8 or uint16; ``detections``
    and ``expert`` are in its original pixel coordinates. Returns an RGB uint8
    array ``(h + legend, w, 3)`` where ``(h, w)`` is the image scaled so its
    longest side is at most ``max_side`` (never enlarged; None keeps the size)
    and ``legend`` is the height of the legend strip below it.
    """
    rgb = to_rgb8(image)
    height, width = rgb.shape[:2]
    scale, out_w, out_h = _sizes(height, width, max_side)
    if (out_h, out_w) != (height, width):
        resized = Image.fromarray(rgb).resize((out_w, out_h), Image.Resampling.LANCZOS,
                                              reducing_gap=2.0)
        rgb = np.asarray(resized)
    dets = _visible(detections, score_threshold)
    blended, outlines = _prediction_layer(rgb, dets, scale)
    pic = Image.fromarray(blended)
    draw = ImageDraw.Draw(pic)
    line = max(1, round(max(out_w, out_h) / 256))
    font = load_font(int(np.clip(round(np.sqrt(out_w * out_h) / 40), 10, 16)))
    for ann in expert:
        colour = class_colour(int(ann["category_id"]))
        for ring in _expert_rings(ann, scale, out_w, out_h):
            _closed_line(draw, ring, colour, line + 1)
    for det, rings in outlines:
        colour = class_colour(int(det["category_id"]))
        for ring in rings:
            _dashed_ring(draw, ring, colour, line)
    pic = _draw_labels(pic, outlines, names, scale, font)
    shown = sorted({int(a["category_id"]) for a in expert} | {int(d["category_id"]) for d in dets})
    legend = _legend(out_w, shown or sorted(names), names, font, line)
    return np.vstack([np.asarray(pic), legend])


def _legend(width: int, category_ids: Sequence[int], names: Mapping[int, str], font: Font,
            line: int) -> np.ndarray:
    """Legend strip ``(rows * row_h, width, 3)`` uint8: line styles then class swatches."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    row_h = int(probe.textbbox((0, 0), "Ag", font=font)[3]) + 8
    items: list[tuple[str, str, tuple[int, int, int]]] = [
        ("solid", "expert", _LEGEND_FG), ("dashed", "prediction", _LEGEND_FG)]
    items += [("swatch", names.get(c, str(c)), class_colour(c)) for c in category_ids]
    placed: list[tuple[int, int, tuple[str, str, tuple[int, int, int]]]] = []
    x, row = 6, 0
    for item in items:
        span = 22 + int(probe.textlength(item[1], font=font)) + 14
        if x + span > width and x > 6:
            x, row = 6, row + 1
        placed.append((x, row, item))
        x += span
    strip = Image.new("RGB", (width, (row + 1) * row_h), _LEGEND_BG)
    draw = ImageDraw.Draw(strip)
    for x0, r, (kind, text, colour) in placed:
        mid = r * row_h + row_h // 2
        if kind == "solid":
            draw.line((x0, mid, x0 + 16, mid), fill=colour, width=line + 1)
        elif kind == "dashed":
            draw.line((x0, mid, x0 + 6, mid), fill=colour, width=line)
            draw.line((x0 + 10, mid, x0 + 16, mid), fill=colour, width=line)
        else:
            draw.rectangle((x0 + 2, mid - 6, x0 + 14, mid + 6), fill=colour)
        draw.text((x0 + 22, mid), text, fill=_LEGEND_FG, font=font, anchor="lm")
    return np.asarray(strip)


def save_overlay(path: str | Path, picture: np.ndarray) -> None:
    """Write an RGB uint8 ``(H, W, 3)`` picture as PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(picture, dtype=np.uint8)).save(tmp, format="PNG", optimize=True)


def encode_picture(picture: np.ndarray, *, fmt: str = "JPEG", quality: int = 85) -> bytes:
    """Encode an RGB uint8 ``(H, W, 3)`` picture as JPEG or PNG bytes."""
    import io

    buffer = io.BytesIO()
    pic = Image.fromarray(np.asarray(picture, dtype=np.uint8))
    if fmt.upper() == "JPEG":
        pic.save(buffer, format="JPEG", quality=quality, optimize=True)
    else:
        pic.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _expert_rle(ann: Mapping[str, Any], height: int, width: int) -> dict[str, Any]:
    """One merged RLE of an expert instance at the original image size."""
    from faster_coco_eval.core import mask as mask_api

    seg = ann.get("segmentation")
    if isinstance(seg, Mapping) and "counts" in seg:
        return _rle(seg)
    polygons = [list(map(float, p)) for p in seg or [] if isinstance(p, list) and len(p) >= 6]
    if not polygons:
        polygons = [_box_ring(ann["bbox"]).reshape(-1).tolist()]
    parts = mask_api.frPyObjects(polygons, height, width)
    merged: dict[str, Any] = mask_api.merge(parts) if len(parts) > 1 else parts[0]
    return merged


def _iou_matrix(dets: Sequence[Mapping[str, Any]], expert: Sequence[Mapping[str, Any]],
                size: tuple[int, int] | None) -> np.ndarray:
    """``(D, G)`` IoU of detections vs expert instances (masks when all have one, else boxes).

    For crowd instances (``iscrowd`` 1) the value is intersection / detection area.
    """
    from faster_coco_eval.core import mask as mask_api

    if not dets or not expert:
        return np.zeros((len(dets), len(expert)), dtype=np.float64)
    crowd = [int(a.get("iscrowd", 0) or 0) for a in expert]
    segs = [d.get("segmentation") for d in dets]
    if all(isinstance(s, Mapping) and "size" in s for s in segs):
        height, width = size or (int(segs[0]["size"][0]), int(segs[0]["size"][1]))  # type: ignore[index]
        dt: list[Any] = [_rle(s) for s in segs]  # type: ignore[arg-type]
        gt: list[Any] = [_expert_rle(a, height, width) for a in expert]
    else:
        dt = [[float(v) for v in d["bbox"]] for d in dets]
        gt = [[float(v) for v in a["bbox"]] for a in expert]
    return np.asarray(mask_api.iou(dt, gt, crowd), dtype=np.float64).reshape(len(dets), len(expert))


def image_score(
    detections: Sequence[Mapping[str, Any]],
    expert: Sequence[Mapping[str, Any]],
    score_threshold: float = 0.5,
    *,
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Per-image quality summary, used to show the worst images first.

    Detections at or above ``score_threshold`` are matched greedily by
    descending score to the unmatched expert instance of the same class with
    the highest IoU >= 0.5 (mask IoU when every detection has a mask, else box
    IoU). Detections matching a crowd region are ignored, crowd regions are
    never false negatives. ``size`` is the image ``(height, width)`` (default:
    taken from the detections' RLE). Returns ``expert``, ``predicted``,
    ``matched``, ``false_positives``, ``false_negatives``, ``mean_iou`` (None
    without matches) and ``badness`` = FN + FP + (1 - mean IoU of matches).
    """
    dets = sorted((d for d in detections if float(d.get("score", 0.0)) >= score_threshold),
                  key=lambda d: -float(d.get("score", 0.0)))
    ious = _iou_matrix(dets, expert, size)
    crowd = [bool(a.get("iscrowd", 0)) for a in expert]
    taken = [False] * len(expert)
    matched: list[float] = []
    false_pos = 0
    for i, det in enumerate(dets):
        best, best_iou, on_crowd = -1, MATCH_IOU, False
        for j, ann in enumerate(expert):
            if int(ann["category_id"]) != int(det["category_id"]) or ious[i, j] < MATCH_IOU:
                continue
            if crowd[j]:
                on_crowd = True
            elif not taken[j] and ious[i, j] >= best_iou:
                best, best_iou = j, float(ious[i, j])
        if best >= 0:
            taken[best] = True
            matched.append(best_iou)
        elif not on_crowd:
            false_pos += 1
    n_expert = sum(not c for c in crowd)
    false_neg = n_expert - len(matched)
    mean_iou = float(np.mean(matched)) if matched else None
    badness = false_neg + false_pos + (1.0 - mean_iou if mean_iou is not None else 0.0)
    return {"expert": n_expert, "predicted": len(dets), "matched": len(matched),
            "false_positives": false_pos, "false_negatives": false_neg,
            "mean_iou": mean_iou, "badness": round(float(badness), 6)}
