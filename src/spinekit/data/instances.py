"""Shapes of one source item -> COCO annotation dicts (polygon segmentation, bbox, area)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from spinekit.data.classes import ClassMap
from spinekit.geometry import (
    as_flat,
    bbox_of,
    circle_polygon,
    polygon_area,
    rectangle_polygon,
)
from spinekit.io.shapes import Shape, SourceItem

_INTERNAL_ATTRIBUTES = ("instance", "group_id", "corners")


def shape_ring(shape: Shape) -> np.ndarray:
    """Polygon ring ``(N, 2)`` of a shape (rectangles and circles converted; polylines closed)."""
    pts = np.asarray(shape.points, dtype=np.float64)
    if shape.kind == "rectangle":
        return rectangle_polygon(pts[0], pts[1])
    if shape.kind == "circle":
        return circle_polygon(pts[0], pts[1])
    return pts


class ItemConverter:
    """Accumulates annotations and categories over the items of one ingest run."""

    def __init__(self, class_map: ClassMap) -> None:
        self.class_map = class_map
        self.annotations: list[dict[str, Any]] = []
        self.category_ids: dict[str, int] = {name: i + 1 for i, name in enumerate(class_map.order)}
        self.dropped: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()

    def _category(self, name: str) -> int:
        if name not in self.category_ids:
            self.category_ids[name] = len(self.category_ids) + 1
        self._counts[name] += 1
        return self.category_ids[name]

    def categories(self) -> list[dict[str, Any]]:
        """COCO categories, ids 1..K in the order given by --classes, then first seen."""
        return [{"id": i, "name": n, "supercategory": "spine"} for n, i in self.category_ids.items()]

    def category_counts(self) -> dict[str, int]:
        """Instances per category name."""
        return {name: self._counts[name] for name in self.category_ids}

    def add(self, item: SourceItem, image: dict[str, Any]) -> None:
        """Convert ``item``'s shapes for ``image`` (points go to ``image['points']``)."""
        groups: dict[str, list[Shape]] = {}
        points: list[dict[str, Any]] = []
        for index, shape in enumerate(item.shapes):
            if shape.kind == "point":
                x, y = shape.points[0]
                points.append({"label": shape.label, "x": round(x, 2), "y": round(y, 2),
                               **{k: v for k, v in shape.attributes.items()
                                  if k not in _INTERNAL_ATTRIBUTES}})
                continue
            key = shape.attributes.get("instance") or f"#{index}"
            groups.setdefault(f"{shape.label}\x00{key}", []).append(shape)
        if points:
            image["points"] = points
        for shapes in groups.values():
            self._add_instance(shapes, int(image["id"]))

    def _add_instance(self, shapes: list[Shape], image_id: int) -> None:
        first = shapes[0]
        name, attributes = self.class_map.resolve(first.label, dict(first.attributes))
        if name is None:
            self.dropped[first.label] += 1
            return
        rings = [shape_ring(s) for s in shapes]
        everything = np.concatenate(rings, axis=0)
        ann: dict[str, Any] = {
            "id": len(self.annotations) + 1,
            "image_id": image_id,
            "category_id": self._category(name),
            "segmentation": [as_flat(r) for r in rings],
            "bbox": bbox_of(everything),
            "area": round(sum(polygon_area(r) for r in rings), 2),
            "iscrowd": 1 if attributes.get("iscrowd") == "1" else 0,
            "shape": attributes.get("shape", first.kind),
        }
        if "corners" in attributes:
            ann["corners"] = json.loads(attributes["corners"])
        extra = {k: v for k, v in attributes.items()
                 if k not in (*_INTERNAL_ATTRIBUTES, "iscrowd", "shape")}
        if extra:
            ann["attributes"] = extra
        self.annotations.append(ann)
