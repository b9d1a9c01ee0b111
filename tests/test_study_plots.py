"""Study plots: one valid PNG per metric, degenerate groups drawn without a crash, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spinekit.errors import InputError
from spinekit.evaluation.statistics import per_unit_means
from spinekit.reports.study_plots import box_plots, density_plots, fold_plot


def _table() -> pd.DataFrame:
    """Groups: 'spread' (normal values), 'constant' (all 0.5), 'single' (one value), 'empty' (all NaN)."""
    rng = np.random.default_rng(1)
    rows = []
    for fold in range(2):
        for image in range(8):
            rows.append({"model": "spread", "fold": fold, "image_id": image,
                         "dice": rng.normal(0.7, 0.1), "hd95": rng.gamma(2, 2)})
            rows.append({"model": "constant", "fold": fold, "image_id": image, "dice": 0.5,
                         "hd95": np.nan if image else 3.0})
            rows.append({"model": "empty", "fold": fold, "image_id": image, "dice": np.nan,
                         "hd95": np.nan})
    rows.append({"model": "single", "fold": 0, "image_id": 0, "dice": 0.9, "hd95": 1.0})
    return pd.DataFrame(rows)


def _assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert np.asarray(image.convert("L")).std() > 0  # something was drawn
        return image.size


def test_density_plots_one_png_per_metric_with_degenerate_groups(tmp_path: Path) -> None:
    units = per_unit_means(_table(), group="model", metrics=["dice", "hd95"])
    paths = density_plots(units, group="model", metrics=["dice", "hd95"], out_dir=tmp_path / "plots",
                          dpi=60)
    assert paths == [tmp_path / "plots" / "density_dice.png", tmp_path / "plots" / "density_hd95.png"]
    for path in paths:
        width, height = _assert_png(path)
        assert (width, height) == (384, 252)  # 6.4 x 4.2 inches at 60 dpi
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["density_dice.png",
                                                                      "density_hd95.png"]


def test_box_plots_and_no_values_metric(tmp_path: Path) -> None:
    table = _table().assign(**{"mean iou/%": np.nan, "mean_iou": 0.5})
    paths = box_plots(table, group="model", metrics=["dice", "mean iou/%", "mean_iou"], out_dir=tmp_path,
                      dpi=50)
    assert [p.name for p in paths] == ["box_dice.png", "box_mean_iou.png", "box_mean_iou_2.png"]
    for path in paths:
        _assert_png(path)
    density = density_plots(table, group="model", metrics=["mean iou/%"], out_dir=tmp_path, dpi=50)
    _assert_png(density[0])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_fold_plot_and_errors(tmp_path: Path) -> None:
    fold_table = pd.DataFrame({"setting": ["aug on"] * 5 + ["aug off"] * 4,
                               "fold": [0, 1, 2, 3, 4, 0, 1, 2, 4],
                               "segm_AP50": [0.8, 0.7, 0.9, 0.85, np.nan, 0.7, 0.6, 0.8, 0.75]})
    out = fold_plot(fold_table, "setting", "segm_AP50", tmp_path / "ablation" / "fold_segm_AP50.png",
                    dpi=50)
    assert out == tmp_path / "ablation" / "fold_segm_AP50.png"
    _assert_png(out)
    with pytest.raises(InputError, match="more than one row"):
        fold_plot(fold_table.assign(fold=0), "setting", "segm_AP50", tmp_path / "x.png")
    with pytest.raises(InputError, match="no column 'bbox_AP'"):
        fold_plot(fold_table, "setting", "bbox_AP", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
