"""COCO results: model outputs -> result dicts in original image coordinates, and their files.

A COCO result dict (the format of ``PRED.json``, a JSON list of them) is::

    {"image_id": int, "category_id": int, "score": float,
     "bbox": [x, y, w, h],                      # original pixels, optional with a mask
     "segmentation": {"size": [H, W], "counts": str}}   # compressed RLE, optional

Landmark models add ``"keypoints": [x, y, v] * 4`` (the vertebra corners TL, TR, BL,
BR in original pixels, ``v`` = 2 visible), ``"num_keypoints": 4``, ``"weak"`` (bool:
the decoder took a low peak to reach its count) and, when the output has exactly the
17 AASCE vertebrae, ``"level"`` (``"T1"`` .. ``"L5"``).

``segmentation`` may also be a polygon list ``[[x1, y1, x2, y2, ...], ...]`` or an
uncompressed RLE (``counts`` a list of run lengths); :func:`normalise_result`
turns both into compressed RLE once the image size is known.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from faster_coco_eval.core import mask as mask_api

from spinekit.errors import InputError
from spinekit.io.atomic import atomic_write_text
from spinekit.io.jsonfile import read_json
from spinekit.io.validate import MAX_COORDINATE, Invalid, integer, join, number, sequence, shown, text
from spinekit.levels import AASCE_LEVELS
from spinekit.masks import check_rle
from spinekit.transforms.geometric import ResizePlan

ImageSizes = Mapping[int, tuple[int, int]]
"""Image id -> ``(height, width)`` in original pixels."""


# ----------------------------------------------------------------------------- masks


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """``(H, W)`` 0/1 (or bool) mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    arr = np.asfortranarray(np.asarray(mask) != 0, dtype=np.uint8)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    return _str_counts(mask_api.encode(arr))


def _axis_samples(start: int, stop: int, in_size: int, out_size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``i0``, ``i1`` (int64) and weight of ``i1`` (float32) for outputs ``start:stop``.

    Same float32 arithmetic as ``F.interpolate(mode="bilinear", align_corners=False)``
    without a scale factor: ``src = (dst + 0.5) * (in / out) - 0.5``, clamped at 0.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(start, stop, dtype=np.float32)
    src = np.maximum((dst + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, src - i0.astype(np.float32)


def upsample_region(prob: np.ndarray, out_height: int, out_width: int,
                    rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` of a bilinear resize.

    ``prob`` is an ``(h, w)`` float array; the ``(rows, cols)``-sized float32 result
    equals that window of ``F.interpolate(prob[None, None], (out_height, out_width),
    mode="bilinear", align_corners=False)`` up to float rounding, computed without the
    rest of the image (numpy, single-threaded: many small windows are cheaper so).
    """
    src = np.asarray(prob, dtype=np.float32)
    y0, y1, wy = _axis_samples(rows[0], rows[1], src.shape[0], out_height)
    x0, x1, wx = _axis_samples(cols[0], cols[1], src.shape[1], out_width)
    top, bottom = src[y0], src[y1]
    top_row = top[:, x0] * (1 - wx) + top[:, x1] * wx
    bottom_row = bottom[:, x0] * (1 - wx) + bottom[:, x1] * wx
    wy = wy[:, None]
    return np.asarray(top_row * (1 - wy) + bottom_row * wy, dtype=np.float32)


def _support(line: np.ndarray, in_size: int, out_size: int) -> tuple[int, int]:
    """Output index range whose bilinear samples touch the True entries of ``line`` (1-D bool)."""
    hits = np.flatnonzero(line)
    first, last = int(hits[0]), int(hits[-1])
    ratio = out_size / in_size
    start = math.floor((first - 0.5) * ratio - 0.5) - 1
    stop = math.ceil((last + 1.5) * ratio - 0.5) + 1
    return max(0, start), min(out_size, stop)


def window_rle(window: np.ndarray, top: int, left: int, height: int, width: int) -> dict[str, Any]:
    """Compressed RLE of a ``height x width`` mask that is zero outside ``window``.

    ``window`` is an ``(h, w)`` bool/0-1 array placed with its top-left pixel at
    (``top``, ``left``); the cost is O(h * w), not O(height * width).
    """
    rows, cols = window.shape
    padded = np.zeros((rows + 2, cols), dtype=np.int8)
    padded[1:-1] = np.asarray(window) != 0
    change = np.flatnonzero(np.diff(padded.ravel(order="F"))) + 1  # column-major, as COCO
    col, row = np.divmod(change, rows + 2)
    position = (left + col) * height + top + row - 1
    # a full-height window ends a run at a column bottom where the next column's starts:
    # both changes fall on the same position and cancel
    same = np.flatnonzero(position[1:] == position[:-1])
    position = np.delete(position, np.concatenate([same, same + 1]))
    position = position[position < height * width]  # a run ending at the last pixel
    counts = np.diff(np.concatenate([[0], position, [height * width]]))
    rle = mask_api.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return _str_counts(rle)


def _str_counts(rle: Mapping[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _mask_rles(probs: np.ndarray, threshold: float, height: int, width: int) -> list[dict[str, Any]]:
    """RLEs of ``probs`` ``(K, h, w)`` resized to ``height x width`` and thresholded (``>=``).

    Only the window around the input pixels at or above ``threshold`` is resized:
    a bilinear sample is a convex combination of its four neighbours, so no pixel
    outside that window can reach the threshold.
    """
    above = np.asarray(probs >= threshold)
    rows_any, cols_any = np.asarray(above.any(axis=2)), np.asarray(above.any(axis=1))
    out = []
    for k in range(probs.shape[0]):
        if not rows_any[k].any():
            out.append(window_rle(np.zeros((0, 0), dtype=bool), 0, 0, height, width))
            continue
        r0, r1 = _support(rows_any[k], probs.shape[1], height)
        c0, c1 = _support(cols_any[k], probs.shape[2], width)
        window = upsample_region(probs[k], height, width, (r0, r1), (c0, c1)) >= threshold
        out.append(window_rle(window, r0, c0, height, width))
    return out


def _boxes_to_original(boxes: torch.Tensor, plan: ResizePlan, width: int, height: int) -> np.ndarray:
    """``(N, 4)`` xyxy boxes at model input resolution -> ``(N, 4)`` float64 COCO xywh, clipped."""
    corners = plan.invert_points(boxes.reshape(-1, 2).numpy()).reshape(-1, 4)
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0.0, width)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0.0, height)
    xywh = corners.copy()
    xywh[:, 2:] = np.maximum(corners[:, 2:] - corners[:, :2], 0.0)
    return xywh


def detections_to_coco(output: Mapping[str, torch.Tensor], *, image_id: int, plan: ResizePlan,
                       orig_width: int, orig_height: int, mask_threshold: float = 0.5,
                       score_threshold: float = 0.0) -> list[dict[str, Any]]:
    """One torchvision Mask R-CNN output -> COCO result dicts in original image coordinates.

    ``output`` holds ``boxes`` ``(N, 4)`` float xyxy, ``labels`` ``(N,)`` int64 category
    ids, ``scores`` ``(N,)`` and, for mask models, ``masks`` ``(N, 1, H, W)`` float
    probabilities, all at the model input size ``(plan.out_height, plan.out_width)``.
    Boxes are mapped back with ``plan.invert_points`` and clipped to the image;
    masks are cropped to the unpadded area, resized bilinearly (as
    ``F.interpolate(align_corners=False)``) to ``orig_height x orig_width`` in the
    window they can cover only, thresholded at ``mask_threshold`` (``>=``) and
    RLE-encoded. Detections with ``score < score_threshold`` are dropped.
    """
    scores = output["scores"].detach().to("cpu", torch.float64).reshape(-1)
    keep = torch.nonzero(scores >= score_threshold).flatten()
    if keep.numel() == 0:
        return []
    boxes = output["boxes"].detach().to("cpu", torch.float64).reshape(-1, 4)[keep]
    labels = output["labels"].detach().to("cpu").reshape(-1)[keep]
    xywh = _boxes_to_original(boxes, plan, orig_width, orig_height)
    masks = output.get("masks")
    rles: list[dict[str, Any]] | None = None
    if masks is not None:
        if tuple(masks.shape[-2:]) != (plan.out_height, plan.out_width):
            raise ValueError(f"masks are {tuple(masks.shape[-2:])}, the plan's input size is "
                             f"{(plan.out_height, plan.out_width)}")
        inner = masks.detach()[..., plan.pad_y:plan.pad_y + plan.inner_height,
                               plan.pad_x:plan.pad_x + plan.inner_width]
        inner = inner.reshape(-1, plan.inner_height, plan.inner_width)
        if keep.numel() < inner.shape[0]:
            inner = inner[keep.to(inner.device)]
        rles = _mask_rles(inner.to("cpu", torch.float32).numpy(), mask_threshold,
                          orig_height, orig_width)
    corners = _keypoints_to_original(output, plan, keep)
    out: list[dict[str, Any]] = []
    for k in range(keep.numel()):
        result: dict[str, Any] = {
            "image_id": int(image_id), "category_id": int(labels[k]),
            "bbox": [round(float(v), 2) for v in xywh[k]], "score": float(scores[keep[k]]),
        }
        if rles is not None:
            result["segmentation"] = rles[k]
        if corners is not None:
            result.update(corners[k])
        out.append(result)
    return out


def _keypoints_to_original(output: Mapping[str, torch.Tensor], plan: ResizePlan,
                           keep: torch.Tensor) -> list[dict[str, Any]] | None:
    """COCO keypoint fields of the kept detections of a landmark output, or None without
    ``keypoints``: corners mapped back to original pixels, ``weak`` and the AASCE ``level``."""
    if "keypoints" not in output:
        return None
    raw = output["keypoints"].detach().to("cpu", torch.float64)
    total = int(raw.shape[0])
    points = plan.invert_points(raw[..., :2].reshape(-1, 2).numpy()).reshape(total, 4, 2)
    weak = output.get("weak")
    flags = weak.detach().to("cpu").reshape(-1).tolist() if weak is not None else [False] * total
    out = []
    for k in keep.tolist():
        flat = [v for x, y in points[k] for v in (round(float(x), 2), round(float(y), 2), 2)]
        fields: dict[str, Any] = {"keypoints": flat, "num_keypoints": 4, "weak": bool(flags[k])}
        if total == len(AASCE_LEVELS):
            fields["level"] = AASCE_LEVELS[k]
        out.append(fields)
    return out


# ----------------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def _segmentation_problem(seg: Any, size: tuple[int, int] | None = None) -> str | None:
    """Why ``seg`` is not a COCO segmentation (RLE dict or polygon list) for an image of
    ``size`` = (height, width) when given, or None. RLEs are checked completely (size,
    run lengths, string alphabet) before any decoder sees them."""
    if isinstance(seg, dict):
        try:
            check_rle(seg, *(size if size is not None else (None, None)))
        except ValueError as exc:
            return f"segmentation: {exc}"
        return None
    if isinstance(seg, list) and seg:
        limit = _coordinate_limit(size)
        for ring in seg:
            if not (isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0
                    and all(_is_number(v) for v in ring)):
                return "segmentation polygons must be lists of >= 3 x, y pairs"
            if not limit[0] <= min(ring) <= max(ring) <= limit[1]:
                return f"segmentation polygon coordinates outside [{limit[0]:g}, {limit[1]:g}]"
        return None
    return "segmentation must be an RLE object or a list of polygons"


def _coordinate_limit(size: tuple[int, int] | None) -> tuple[float, float]:
    """Accepted coordinate range: one image size beyond each border (any size without one)."""
    if size is None:
        return (-MAX_COORDINATE, MAX_COORDINATE)
    extent = float(max(size))
    return (-extent, 2.0 * extent)


def result_problem(entry: Any, size: tuple[int, int] | None = None) -> str | None:
    """Why ``entry`` is not a valid COCO result dict (for an image of ``size`` =
    (height, width) when given), or None when it is."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    for key in ("image_id", "category_id"):
        if not _is_int(entry.get(key)):
            return f"{key!r} missing or not an integer"
    if not _is_number(entry.get("score")):
        return "'score' missing or not a finite number"
    if "bbox" not in entry and "segmentation" not in entry:
        return "needs 'bbox' or 'segmentation'"
    if "bbox" in entry:
        box = entry["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            return "'bbox' must be [x, y, width, height] numbers"
        if box[2] < 0 or box[3] < 0:
            return "'bbox' width and height must be >= 0"
        limit = _coordinate_limit(size)
        if not limit[0] <= min(box) <= max(box) <= limit[1]:
            return f"'bbox' values outside [{limit[0]:g}, {limit[1]:g}]"
    if "segmentation" in entry:
        problem = _segmentation_problem(entry["segmentation"], size)
        if problem is not None:
            return problem
    return _keypoint_problem(entry, size)


def _keypoint_problem(entry: dict[str, Any], size: tuple[int, int] | None) -> str | None:
    """Why the optional landmark fields of ``entry`` are malformed, or None
    (the strict helpers of :mod:`spinekit.io.validate`)."""
    try:
        if "keypoints" in entry:
            lo, hi = _coordinate_limit(size)
            values = sequence(entry["keypoints"], "keypoints")
            if len(values) != 12:
                raise Invalid("keypoints", f"must be 4 corners [x, y, v] * 4 (12 numbers), got {len(values)}")
            for i, value in enumerate(values):
                if i % 3 == 2:
                    integer(value, join("keypoints", i), lo=0, hi=2)
                else:
                    number(value, join("keypoints", i), lo=lo, hi=hi)
        if "num_keypoints" in entry:
            integer(entry["num_keypoints"], "num_keypoints", lo=0, hi=4)
        if "weak" in entry and not isinstance(entry["weak"], bool):
            raise Invalid("weak", f"must be true or false, got {shown(entry['weak'])}")
        if "level" in entry and entry["level"] is not None:
            text(entry["level"], "level")
    except Invalid as exc:
        return str(exc)
    return None


def _to_compressed_rle(seg: Any, height: int, width: int) -> dict[str, Any]:
    """Polygon list, uncompressed or compressed RLE -> compressed RLE with a str ``counts``."""
    if isinstance(seg, list):
        rle = mask_api.merge(mask_api.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):
        rle = mask_api.frPyObjects(seg, height, width)
    else:
        rle = seg
    out = _str_counts(rle)
    if out["size"] != [height, width]:
        raise ValueError(f"segmentation size {out['size']} differs from the image size "
                         f"[{height}, {width}]")
    return out


def normalise_result(entry: Any, size: tuple[int, int]) -> dict[str, Any]:
    """Validated copy of a result for an image of ``size`` = (height, width).

    The copy has int ids, a float score, a ``bbox`` (computed from the mask when
    absent) and, when a segmentation was given, compressed RLE. ValueError names
    the problem.
    """
    problem = result_problem(entry, size)
    if problem is not None:
        raise ValueError(problem)
    return _normalised(entry, size)


def _normalised(entry: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """:func:`normalise_result` of an entry already checked for ``size``."""
    out: dict[str, Any] = {"image_id": int(entry["image_id"]),
                           "category_id": int(entry["category_id"]),
                           "score": float(entry["score"])}
    if "segmentation" in entry:
        out["segmentation"] = _to_compressed_rle(entry["segmentation"], size[0], size[1])
    for key in ("keypoints", "num_keypoints", "weak", "level"):
        if key in entry:
            out[key] = entry[key]
    if "bbox" in entry:
        out["bbox"] = [float(v) for v in entry["bbox"]]
    else:
        out["bbox"] = [float(v) for v in mask_api.toBbox(out["segmentation"])]
    return out


# ----------------------------------------------------------------------------- files


def image_sizes(images: Iterable[Mapping[str, Any]]) -> dict[int, tuple[int, int]]:
    """COCO image dicts (e.g. ``records.images``) -> {id: (height, width)} for :func:`load_results`."""
    return {int(img["id"]): (int(img["height"]), int(img["width"])) for img in images}


def load_results(path: str | Path, *, image_sizes: ImageSizes | None = None,
                 category_ids: Collection[int] | None = None,
                 require_masks: str | None = None) -> list[dict[str, Any]]:
    """Read a COCO results JSON file (a list of result dicts), strictly (:func:`read_json`).

    Every entry is validated; :class:`InputError` names the file and the first bad
    entry. With ``image_sizes`` (image id -> (height, width), e.g. of the whole
    dataset) unknown image ids are errors too, masks must have their image's size,
    and entries are normalised (:func:`normalise_result`: polygons and uncompressed
    RLE become compressed RLE, missing boxes are computed from masks); without,
    entries are returned as read. With ``category_ids``, a category outside them is
    an error. ``require_masks`` (the command's name) makes an entry without a
    ``segmentation`` (or landmark ``keypoints``) an error saying that command needs masks.
    """
    file = Path(path)
    try:
        data = read_json(file)
    except InputError as exc:
        if exc.reason == "file not found":
            raise InputError(file, "results file not found") from exc
        raise InputError(file, f"cannot read COCO results JSON: {exc.reason}") from exc
    if not isinstance(data, list):
        raise InputError(file, "COCO results must be a JSON list of detections")
    known = None if category_ids is None else set(category_ids)
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(data):
        problem = _entry_problem(entry, image_sizes, known, require_masks)
        if problem is None and image_sizes is not None:
            try:
                entry = _normalised(entry, image_sizes[int(entry["image_id"])])
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            raise InputError(file, f"entry {index}: {problem}")
        out.append(entry)
    return out


def _entry_problem(entry: Any, image_sizes: ImageSizes | None, category_ids: set[int] | None,
                   require_masks: str | None) -> str | None:
    if image_sizes is not None and isinstance(entry, dict) and _is_int(entry.get("image_id")):
        if int(entry["image_id"]) not in image_sizes:
            return f"image_id {entry['image_id']} is not an image of the dataset"
        problem = result_problem(entry, image_sizes[int(entry["image_id"])])
    else:
        problem = result_problem(entry)
    if problem is not None:
        return problem
    if category_ids is not None and int(entry["category_id"]) not in category_ids:
        return (f"category_id {entry['category_id']} is not a category of the dataset "
                f"({', '.join(str(c) for c in sorted(category_ids))})")
    if require_masks and "segmentation" not in entry and "keypoints" not in entry:
        return (f"no 'segmentation': {require_masks} needs instance masks "
                "(box-only results cannot be measured)")
    return None


def write_results(path: str | Path, results: list[dict[str, Any]]) -> None:
    """Write COCO result dicts as a compact JSON list, atomically."""
    atomic_write_text(path, json.dumps(results, separators=(",", ":"), allow_nan=False) + "\n")
