"""Training augmentations: the random affine moves image, masks, boxes and corners together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.torch_dataset import DatasetConfig, SpineDataset
from spinekit.engine.config import config_from_dict
from spinekit.engine.train import dataset_config, eval_dataset_config
from spinekit.errors import UsageError
from spinekit.geometry import rasterize
from spinekit.transforms.augment import Augment, apply_affine, jitter_intensity, random_affine, warp_image
from test_landmarks import _aasce_folder

STRONG = Augment(rotate_deg=10, scale=0.1, translate=0.05)


@pytest.fixture
def aasce_dataset(tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    ingest(_aasce_folder(tmp_path / "src", count=2), out, IngestOptions(format="aasce"))
    return out


def test_affine_image_and_points_agree() -> None:
    """A bright square warped as an image lands where its warped polygon is rasterised."""
    torch.manual_seed(3)
    square = np.array([[20.0, 30.0], [44.0, 30.0], [44.0, 54.0], [20.0, 54.0]])
    image = torch.from_numpy(rasterize([square], 96, 64).astype(np.float32))[None]
    for _ in range(5):
        matrix = random_affine(STRONG, 96, 64)
        warped = warp_image(image, matrix)[0] > 0.5
        expected = rasterize([apply_affine(square, matrix)], 96, 64) > 0
        disagree = np.count_nonzero(warped.numpy() != expected)
        assert disagree <= 0.1 * expected.sum(), disagree  # only boundary pixels may differ


def test_dataset_affine_keeps_corners_masks_boxes_and_image_consistent(aasce_dataset: Path) -> None:
    torch.manual_seed(0)
    config = DatasetConfig(size=(128, 64), keep_aspect=True, augment=STRONG)
    plain = SpineDataset(aasce_dataset, part="all", config=DatasetConfig(size=(128, 64), keep_aspect=True))
    data = SpineDataset(aasce_dataset, part="all", config=config)
    moved = 0.0
    for _ in range(4):
        image, target = data[0]
        corners, masks, boxes = target["corners"].numpy(), target["masks"].numpy(), target["boxes"].numpy()
        assert len(corners) == len(masks) == len(boxes) > 0
        for quad, mask, box in zip(corners, masks, boxes, strict=True):
            ring = quad[[0, 1, 3, 2]]
            assert np.array_equal(rasterize([ring], 128, 64), mask), "mask = rasterised corners"
            rows, cols = np.nonzero(mask)
            assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert float(image[0][mask > 0].mean()) > 0.5, "the bright vertebra is under its mask"
        moved += float(np.abs(corners - plain[0][1]["corners"].numpy()).mean())
    assert moved > 0.5, "the affine moved the corners"


def test_intensity_jitter_stays_in_range_and_changes_the_image() -> None:
    torch.manual_seed(1)
    image = torch.linspace(0, 1, 100).reshape(1, 10, 10)
    out = jitter_intensity(image, Augment(brightness=0.2, contrast=0.3, gamma=0.3))
    assert out.shape == image.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.allclose(out, image)


def test_config_keys_are_off_by_default_validated_and_never_used_for_evaluation() -> None:
    default = config_from_dict({})
    assert not dataset_config(default).augment.affine and not dataset_config(default).augment.intensity
    config = config_from_dict({"data": {"aug_rotate_deg": 10, "aug_scale": 0.1, "aug_gamma": 0.2}})
    assert dataset_config(config).augment == Augment(gamma=0.2, rotate_deg=10, scale=0.1)
    assert eval_dataset_config(config).augment == Augment()
    with pytest.raises(UsageError, match=r"data\.aug_rotate_deg must be <= 45, got 90"):
        config_from_dict({"data": {"aug_rotate_deg": 90}})
    with pytest.raises(UsageError, match=r"data\.aug_scale must be >= 0"):
        config_from_dict({}, ["data.aug_scale=-0.1"])
