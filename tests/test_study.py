"""Comparison study: arms, manifest checks, a tiny end-to-end study, resume, datasets mode."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.errors import InputError
from spinekit.study.compare import run_study
from spinekit.study.spec import (
    Arm,
    StudySpec,
    ablation_arms,
    dataset_arms,
    model_arms,
    open_study,
)

TINY = ("data.size=[64,64]", "data.workers=0", "train.batch_size=2", "train.epochs=1",
        "train.max_steps=2", "optim.lr=0.001", "optim.warmup_steps=1", "train.threads=1")


@pytest.fixture
def dataset(labelme_folder: Path, tmp_path: Path) -> Path:
    """Unlike conftest's ``dataset``: not split, so the study makes its own folds."""
    out = tmp_path / "ds"
    ingest(labelme_folder, out, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    return out


def test_arm_parsing_and_errors(dataset: Path) -> None:
    arms = model_arms(dataset, "maskrcnn_light, unet_r18")
    assert [a.label for a in arms] == ["maskrcnn_light", "unet_r18"]
    assert arms[1].overrides == ("model.name=unet_r18",)
    with pytest.raises(ValueError, match="unknown model 'resnet_magic'"):
        model_arms(dataset, "maskrcnn_light,resnet_magic")
    with pytest.raises(ValueError, match="twice"):
        model_arms(dataset, "unet_r18,unet_r18")
    flip = ablation_arms(dataset, "flip=on,off")
    assert [a.overrides for a in flip] == [("data.flip_prob=0.5",), ("data.flip_prob=0.0",)]
    lr = ablation_arms(dataset, "optim.lr=1e-3,1e-4")
    assert lr[1].label == "optim.lr=1e-4" and lr[1].overrides == ("optim.lr=1e-4",)
    with pytest.raises(ValueError, match="not one of on, off"):
        ablation_arms(dataset, "flip=yes,no")
    with pytest.raises(ValueError, match="at least two"):
        ablation_arms(dataset, "flip=on")
    with pytest.raises(InputError, match="not a spinekit dataset"):
        dataset_arms(f"a={dataset},b={dataset.parent / 'missing'}")


def test_study_folder_belongs_to_one_study(dataset: Path, tmp_path: Path, labelme_folder: Path) -> None:
    out = tmp_path / "study"
    spec = StudySpec(arms=model_arms(dataset, "maskrcnn_light"), mode="models", folds=2)
    assert [a["label"] for a in open_study(out, spec)] == ["maskrcnn_light"]
    # adding an arm is allowed; the earlier one is kept first
    more = StudySpec(arms=model_arms(dataset, "unet_r18"), mode="models", folds=2)
    assert [a["label"] for a in open_study(out, more)] == ["maskrcnn_light", "unet_r18"]
    with pytest.raises(InputError, match="folds was 2, now 3"):
        open_study(out, StudySpec(arms=spec.arms, mode="models", folds=3))
    other = tmp_path / "other"
    ingest(labelme_folder, other, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_", classes="F"))
    with pytest.raises(InputError, match="other data or the labels changed"):
        open_study(out, StudySpec(arms=(Arm("maskrcnn_light", other, ("model.name=maskrcnn_light",)),),
                                  mode="models", folds=2))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a spinekit study folder"):
        open_study(foreign, spec)


def test_tiny_model_study_end_to_end_and_resume(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    spec = StudySpec(arms=model_arms(dataset, "maskrcnn_light,unet_r18"), mode="models", folds=2,
                     test_fraction=0.34, overrides=TINY)
    seen: list[str] = []
    result = run_study(spec, out, progress=lambda done, total, label: seen.append(label))
    per_image = pd.read_csv(out / "per_image.csv")
    folds = pd.read_csv(out / "folds.csv")
    splits = json.loads((out / "splits" / "reference.json").read_text())
    assert not (dataset / "splits.json").exists()  # the dataset folder is not touched
    assert len(splits["folds"]) == 2 and splits["test"]
    assert len(per_image) == 2 * 2 * len(splits["test"])
    assert set(per_image["model"]) == {"maskrcnn_light", "unet_r18"}
    assert set(per_image["image_id"]) == set(splits["test"])
    assert {"mean_iou", "pixel_accuracy", "recognised"} <= set(per_image.columns)
    assert len(folds) == 4 and {"segm_AP50", "bbox_AP", "train_seconds_per_image"} <= set(folds.columns)
    summary = (out / "summary.md").read_text()
    assert "maskrcnn_light" in summary and "unet_r18" in summary and "mean IoU" in summary
    statistics = (out / "statistics.md").read_text()
    assert "Kruskal" in statistics and "Holm" in statistics
    report = (out / "report.html").read_text()
    assert "<table>" in report and "data:image/png;base64" in report
    assert seen[-1] == "statistics and report" and len(seen) == 5
    assert (out / "report.html") in result.files
    assert (out / "plots" / "box_mean_iou.png") in result.files, "docs/study.md promises box plots"

    # resume: finished folds are read back, not trained again
    checkpoint = out / "runs" / "unet_r18" / "fold1" / "run" / "checkpoints" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = run_study(spec, out)
    assert checkpoint.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again.per_image, per_image)


def test_folds_more_than_patients_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    spec = StudySpec(arms=model_arms(dataset, "unet_r18"), mode="models", folds=5, overrides=TINY)
    with pytest.raises(InputError, match="3 patients cannot make 5 folds"):
        run_study(spec, tmp_path / "study")


def test_datasets_study_carries_folds_and_scores_shared_classes(labelme_folder: Path, tmp_path: Path
                                                                 ) -> None:
    full, local = tmp_path / "full", tmp_path / "local"
    ingest(labelme_folder, full, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    ingest(labelme_folder, local, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_", classes="F"))
    spec = StudySpec(arms=dataset_arms(f"full={full},local={local}"), mode="datasets", folds=2,
                     test_fraction=0.34, overrides=(*TINY, "model.name=unet_r18"))
    run_study(spec, tmp_path / "study")
    reference = json.loads((tmp_path / "study" / "splits" / "full.json").read_text())
    carried = json.loads((tmp_path / "study" / "splits" / "local.json").read_text())
    names = {int(i["id"]): i["file_name"]
             for i in json.loads((full / "annotations.json").read_text())["images"]}
    local_names = {int(i["id"]): i["file_name"]
                   for i in json.loads((local / "annotations.json").read_text())["images"]}
    assert [names[i] for i in reference["test"]] == [local_names[i] for i in carried["test"]]
    # only class F (shared by both) is scored: no E predictions kept for the full arm
    full_preds = json.loads((tmp_path / "study" / "runs" / "full" / "fold0" / "test_predictions.json")
                            .read_text())
    assert {int(p["category_id"]) for p in full_preds} <= {1}


def test_ablation_study_has_paired_table(dataset: Path, tmp_path: Path) -> None:
    spec = StudySpec(arms=ablation_arms(dataset, "flip=on,off"), mode="ablation", folds=2,
                     test_fraction=0.34, overrides=(*TINY, "model.name=pspnet_r18"))
    result = run_study(spec, tmp_path / "study")
    assert set(result.folds["model"]) == {"flip=on", "flip=off"}
    configs = {arm: (tmp_path / "study" / "runs" / arm / "fold0" / "run" / "config.yaml").read_text()
               for arm in ("flip=on", "flip=off")}
    assert "flip_prob: 0.5" in configs["flip=on"] and "flip_prob: 0.0" in configs["flip=off"]
    summary = (tmp_path / "study" / "summary.md").read_text()
    assert "| p, flip=on vs flip=off |" in summary and "segmentation AP50" in summary
    statistics = (tmp_path / "study" / "statistics.md").read_text()
    # 2-step models: every AP is 0 in both arms, so the paired tests are n/a with the reason
    assert "paired differences have zero variance" in statistics
