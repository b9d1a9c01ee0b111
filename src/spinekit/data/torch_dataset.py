"""Torch dataset over ``annotations.json`` + ``splits.json``.

Each sample is ``(image, target)``: ``image`` a float32 tensor ``(C, H, W)`` in
[0, 1] (C = 1 gray, or 3), ``target`` a torchvision detection dict:

- ``boxes``: ``(N, 4)`` float32 xyxy in output pixels
- ``labels``: ``(N,)`` int64 category ids (1..K; 0 is background)
- ``masks``: ``(N, H, W)`` uint8 0/1
- ``image_id``: int64 scalar; ``area``: ``(N,)`` float32 (mask pixels); ``iscrowd``: ``(N,)`` int64
- ``orig_size``: int64 ``(2,)`` (H, W) of the source image
- ``corners``: ``(N, 4, 2)`` float32 vertebra corners in output pixels (top-left,
  top-right, bottom-left, bottom-right as seen on the image), only when every
  instance of the image carries ``corners`` (AASCE ingest keeps them)

Negative images give ``N = 0`` (empty boxes ``(0, 4)``, masks ``(0, H, W)``).
Images and instances excluded by ``cleaning_report.json`` are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from spinekit.data.records import DatasetRecords, load_dataset, load_exclusions
from spinekit.data.splits import Part, load_splits, split_image_ids
from spinekit.errors import InputError
from spinekit.geometry import as_points, rasterize
from spinekit.transforms.augment import Augment, apply_affine, jitter_intensity, random_affine, warp_image
from spinekit.transforms.geometric import ResizePlan, flip_pairs_to_label_map, hflip, model_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetConfig:
    """Sample preparation.

    ``size``: output (H, W), default 256x256 as in the ultrasound study.
    ``keep_aspect``: scale uniformly and pad instead of stretching.
    ``channels``: 1 (gray, the modalities' native form) or 3.
    ``contrast``: "none", "minmax", "equalize" or "clahe" (applied after resizing).
    ``flip_prob``: probability of a horizontal flip (training only).
    ``flip_pairs``: left/right class names swapped by a flip, e.g. ``{"TP_left": "TP_right"}``.
    ``augment``: intensity jitter and random affine (training only; see
    :mod:`spinekit.transforms.augment`); image, masks, boxes and corners move together.
    """

    size: tuple[int, int] = (256, 256)
    keep_aspect: bool = False
    channels: Literal[1, 3] = 1
    contrast: Literal["none", "minmax", "equalize", "clahe"] = "none"
    flip_prob: float = 0.0
    flip_pairs: Mapping[str, str] = field(default_factory=dict)
    augment: Augment = field(default_factory=Augment)


def _load_pil(path: Path, plan_size: tuple[int, int], channels: int) -> Image.Image:
    """Open and decode an image; large JPEGs decode at a reduced scale (draft mode)."""
    img: Image.Image
    try:
        img = Image.open(path)
        if img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (plan_size[1], plan_size[0]))
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"cannot read image ({exc})") from exc
    return img


class SpineDataset(torch.utils.data.Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Images of one split part (``train``/``val`` of ``fold``, ``test``, ``trainval``, ``all``).

    The parts come from ``root/splits.json`` or from ``splits_file`` when given.
    """

    def __init__(self, root: str | Path, *, part: Part = "train", fold: int = 0,
                 config: DatasetConfig = DatasetConfig(), splits_file: str | Path | None = None) -> None:
        self.config = config
        self.records: DatasetRecords = load_dataset(root)
        excluded_images, excluded_anns = load_exclusions(root)
        ids = ({int(i["id"]) for i in self.records.images} if part == "all" and splits_file is None
               and not (Path(root) / "splits.json").exists()
               else set(split_image_ids(load_splits(root, splits_file), part, fold)))
        self.images = [img for img in self.records.images
                       if int(img["id"]) in ids and int(img["id"]) not in excluded_images]
        by_image = self.records.annotations_by_image()
        self.annotations = {
            int(img["id"]): [a for a in by_image.get(int(img["id"]), [])
                             if int(a["id"]) not in excluded_anns and not a.get("iscrowd")]
            for img in self.images
        }
        names = {n: i for i, n in self.records.category_names().items()}
        self.label_map = flip_pairs_to_label_map(dict(config.flip_pairs), names)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Number of foreground classes (the largest category id)."""
        return max((int(c["id"]) for c in self.records.categories), default=0)

    def missing_corners(self) -> tuple[int, int]:
        """``(instances without 4 valid corners, all instances)`` of this part."""
        anns = [a for group in self.annotations.values() for a in group]
        return sum(_corners(a) is None for a in anns), len(anns)

    def image_info(self, index: int) -> dict[str, Any]:
        """The COCO image record of sample ``index``."""
        return self.images[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        info = self.images[index]
        path = self.records.image_path(info)
        plan = ResizePlan.make(int(info["width"]), int(info["height"]), self.config.size,
                               self.config.keep_aspect)
        pil = _load_pil(path, self.config.size, self.config.channels)
        # JPEG draft mode may decode at a reduced scale; the plan stays in source coordinates
        image = model_input(pil, plan, channels=self.config.channels, contrast=self.config.contrast)
        aug = self.config.augment
        matrix = random_affine(aug, plan.out_height, plan.out_width) if aug.affine else None
        target = self._target(info, plan, matrix)
        if matrix is not None:
            image = warp_image(image, matrix)
        if aug.intensity:
            image = jitter_intensity(image, aug)
        if self.config.flip_prob > 0 and float(torch.rand(())) < self.config.flip_prob:
            image, target = hflip(image, target, self.label_map)
        return image, target

    def _target(self, info: dict[str, Any], plan: ResizePlan,
                matrix: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        height, width = plan.out_height, plan.out_width
        boxes, labels, masks, areas, corners = [], [], [], [], []
        for ann in self.annotations[int(info["id"])]:
            rings = [apply_affine(plan.apply_points(as_points(part)), matrix) for part in ann["segmentation"]]
            mask = rasterize(rings, height, width)
            if not mask.any():
                continue
            rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
            labels.append(int(ann["category_id"]))
            masks.append(mask)
            areas.append(float(np.count_nonzero(mask)))
            points = _corners(ann)
            corners.append(None if points is None else apply_affine(plan.apply_points(points), matrix))
        n = len(labels)
        mask_tensor = (torch.from_numpy(np.stack(masks)) if n
                       else torch.zeros((0, height, width), dtype=torch.uint8))
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": mask_tensor,
            "image_id": torch.tensor(int(info["id"]), dtype=torch.int64),
            "area": torch.tensor(areas, dtype=torch.float32),
            "iscrowd": torch.zeros(n, dtype=torch.int64),
            "orig_size": torch.tensor([int(info["height"]), int(info["width"])], dtype=torch.int64),
        }
        if all(c is not None for c in corners):
            target["corners"] = torch.tensor(np.array(corners, dtype=np.float32).reshape(n, 4, 2))
        return target


def _corners(ann: dict[str, Any]) -> np.ndarray | None:
    """The annotation's ``corners`` as ``(4, 2)`` float64 source pixels, or None when absent or malformed."""
    try:
        points = np.asarray(ann.get("corners"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return points if points.shape == (4, 2) and np.isfinite(points).all() else None


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[
        list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Detection-style collate: lists of images and targets (sizes may differ)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
