"""The report's overlay grid: evaluated images ranked worst first, rendered small.

Images come from the dataset's ``splits.json`` part named by the run's
``dataset.json`` (``split``, ``fold``); without a splits file, the images that
have predictions. Images and annotations excluded by cleaning are left out.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spinekit.data.records import DatasetRecords, load_exclusions
from spinekit.errors import InputError
from spinekit.io.images import read_image
from spinekit.reports.overlay import draw_overlay, encode_picture, image_score

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class RankedImage:
    """One evaluated image with its expert instances, detections and :func:`image_score`."""

    image: dict[str, Any]
    expert: list[dict[str, Any]]
    detections: list[dict[str, Any]]
    score: dict[str, Any]


@dataclass
class Overlay:
    """A rendered overlay: the ranked image and its picture as a ``data:`` URI."""

    item: RankedImage
    data_uri: str


def _split_ids(records: DatasetRecords, split: str, fold: int,
               predictions: Sequence[Mapping[str, Any]], problems: list[str]) -> list[int]:
    from spinekit.data.splits import load_splits, split_image_ids

    try:
        splits = load_splits(records.root)
        return [int(i) for i in split_image_ids(splits, split, fold)]  # type: ignore[arg-type]
    except (InputError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"images of split {split!r} unknown ({exc}); showing the images that have "
                        "predictions")
    return sorted({int(d["image_id"]) for d in predictions})


def rank_images(records: DatasetRecords, predictions: Sequence[Mapping[str, Any]], *,
                split: str, fold: int, score_threshold: float,
                problems: list[str]) -> list[RankedImage]:
    """Evaluated images, worst first (``badness`` descending, then file name and id)."""
    try:
        excluded_images, excluded_anns = load_exclusions(records.root)
    except InputError as exc:
        problems.append(f"{exc} (cleaning exclusions not applied)")
        excluded_images, excluded_anns = set(), set()
    by_id = {int(img["id"]): img for img in records.images}
    wanted = _split_ids(records, split, fold, predictions, problems)
    unknown = sorted({i for i in wanted if i not in by_id})
    if unknown:
        problems.append(f"{len(unknown)} image id(s) not in the dataset, e.g. {unknown[0]}")
    dets: dict[int, list[dict[str, Any]]] = {}
    for det in predictions:
        dets.setdefault(int(det["image_id"]), []).append(dict(det))
    anns = records.annotations_by_image()
    ranked = []
    for image_id in dict.fromkeys(wanted):
        if image_id not in by_id or image_id in excluded_images:
            continue
        image = by_id[image_id]
        expert = [a for a in anns.get(image_id, []) if int(a["id"]) not in excluded_anns]
        found = dets.get(image_id, [])
        size = (int(image["height"]), int(image["width"]))
        score = image_score(found, expert, score_threshold, size=size)
        ranked.append(RankedImage(image=image, expert=expert, detections=found, score=score))
    ranked.sort(key=lambda r: (-r.score["badness"], str(r.image.get("file_name")),
                               int(r.image["id"])))
    return ranked


def render_overlays(records: DatasetRecords, ranked: Sequence[RankedImage], *, limit: int,
                    score_threshold: float, max_side: int = 384, problems: list[str],
                    progress: Progress | None = None) -> list[Overlay]:
    """Render up to ``limit`` overlays in ranking order as JPEG ``data:`` URIs.

    Images that cannot be read are noted in ``problems`` and the next one is taken.
    """
    names = records.category_names()
    out: list[Overlay] = []
    total = min(limit, len(ranked))
    for item in ranked:
        if len(out) >= limit:
            break
        if progress is not None:
            progress(len(out), total)
        try:
            path: Path = records.image_path(item.image)
            pixels = read_image(path, frame=int(item.image.get("frame") or 0))
        except InputError as exc:
            problems.append(f"overlay skipped: {exc}")
            continue
        picture = draw_overlay(pixels, detections=item.detections, expert=item.expert, names=names,
                               score_threshold=score_threshold, max_side=max_side)
        data = base64.b64encode(encode_picture(picture, fmt="JPEG", quality=85)).decode("ascii")
        out.append(Overlay(item=item, data_uri=f"data:image/jpeg;base64,{data}"))
    if progress is not None:
        progress(len(out), max(total, len(out)))
    return out
