"""Model predictions -> LabelMe pre-annotations for the labelling loop.

A user opens the written ``<name>.json`` in LabelMe, corrects the shapes and
saves; ``spinekit ingest --format labelme`` then reads the folder back. Each
shape's ``description`` holds the model score (``score=0.934``), which the
reader keeps as the annotation attribute ``description``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spinekit.geometry import mask_to_polygons, rectangle_polygon
from spinekit.io.formats.labelme import labelme_document, labelme_shape, write_labelme
from spinekit.masks import check_rle

log = logging.getLogger(__name__)


def _mask_outline(segmentation: Mapping[str, Any], width: int, height: int,
                  tolerance: float) -> np.ndarray | None:
    """Largest outer outline ``(N, 2)`` of an RLE mask, or None when the mask is empty."""
    from faster_coco_eval.core import mask as mask_api

    check_rle(segmentation, height, width)  # size, runs and alphabet, before the C decoder
    size = [height, width]
    rle: Any = {"size": size, "counts": segmentation["counts"]}
    if isinstance(segmentation["counts"], list):
        rle = mask_api.frPyObjects(rle, height, width)
    mask = np.asarray(mask_api.decode(rle), dtype=np.uint8)
    rings = mask_to_polygons(mask, min_area=1.0, tolerance=tolerance)
    return rings[0] if rings else None


def detection_shape(
    detection: Mapping[str, Any], *, width: int, height: int, names: Mapping[int, str],
    simplify_tolerance: float = 1.0,
) -> dict[str, Any] | None:
    """One LabelMe shape for a detection: mask outline polygon, else its box; None if empty."""
    category = int(detection["category_id"])
    if category not in names:
        raise ValueError(f"detection category_id {category} has no class name")
    label = names[category]
    description = f"score={float(detection['score']):.3f}"
    seg = detection.get("segmentation")
    if isinstance(seg, Mapping) and "counts" in seg:
        ring = _mask_outline(seg, width, height, simplify_tolerance)
        if ring is not None and len(ring) >= 3:
            return labelme_shape(label, ring.tolist(), description=description)
    x, y, w, h = (float(v) for v in detection.get("bbox") or (0, 0, 0, 0))
    if w <= 0 or h <= 0:
        return None
    corners = rectangle_polygon((x, y), (x + w, y + h))[[0, 2]]
    return labelme_shape(label, corners.tolist(), shape_type="rectangle", description=description)


def write_labelme_predictions(
    out_json: Path,
    *,
    image_ref: str,
    width: int,
    height: int,
    detections: Sequence[Mapping[str, Any]],
    names: Mapping[int, str],
    score_threshold: float = 0.5,
    simplify_tolerance: float = 1.0,
) -> int:
    """Write one LabelMe document with a shape per detection scoring >= ``score_threshold``.

    ``image_ref`` is the image path relative to ``out_json``'s folder (LabelMe's
    ``imagePath``); detections are COCO results in that image's pixel
    coordinates with an optional RLE ``segmentation`` of size
    ``[height, width]``. A mask becomes the polygon of its largest connected
    part (Douglas-Peucker ``simplify_tolerance`` in pixels), a detection
    without a mask (or with an empty one) a rectangle from its box. Shapes are
    ordered by descending score; label = class name, ``description`` =
    ``score=0.934``. Returns the number of shapes written (the file is
    written atomically even when it is 0, so the image shows up in LabelMe).
    """
    kept = sorted((d for d in detections if float(d["score"]) >= score_threshold),
                  key=lambda d: -float(d["score"]))
    shapes = []
    for det in kept:
        shape = detection_shape(det, width=width, height=height, names=names,
                                simplify_tolerance=simplify_tolerance)
        if shape is None:
            log.debug("%s: detection of %s has an empty mask and box; skipped", out_json,
                      names.get(int(det["category_id"])))
        else:
            shapes.append(shape)
    write_labelme(out_json, labelme_document(image_ref, width, height, shapes))
    return len(shapes)
