"""The labelling loop: predict -> LabelMe pre-annotations -> user edits -> ingest -> train again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.records import load_dataset
from spinekit.data.splits import SplitConfig, make_splits
from spinekit.engine.config import load_config
from spinekit.engine.predict import predict
from spinekit.engine.train import fit
from spinekit.errors import InputError

TINY = ["data.size=[64,64]", "data.workers=0", "train.batch_size=2", "train.epochs=1", "train.threads=1",
        "data.val_part=none"]


def test_predict_edit_ingest_train(labelme_folder: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ingest(labelme_folder, ds, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    make_splits(ds, SplitConfig(test_fraction=0.34, folds=2, seed=0))
    fit(ds, tmp_path / "run", load_config(None, TINY))
    images = sorted(labelme_folder.glob("*.png"))
    report = predict(tmp_path / "run", images, tmp_path / "pred", formats=("coco", "labelme", "overlay"),
                     score_threshold=0.0, device="cpu")
    assert report.images == len(images) == 6
    assert len(json.loads((tmp_path / "pred" / "predictions.json").read_text())) == report.detections
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 6
    folder = tmp_path / "pred" / "labelme"
    docs = sorted(folder.glob("*.json"))
    assert len(docs) == 6 and all((folder / json.loads(d.read_text())["imagePath"]).is_file() for d in docs)
    # the expert corrects every pre-annotation: drops the model's shapes and draws the truth
    for doc_path in docs:
        doc = json.loads(doc_path.read_text())
        doc["shapes"] = [{"label": "F", "points": [[10, 10], [22, 10], [22, 20], [10, 20]], "group_id": None,
                          "shape_type": "polygon", "flags": {}, "description": "corrected"}]
        doc_path.write_text(json.dumps(doc))
    corrected = tmp_path / "corrected"
    ingest(folder, corrected, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    records = load_dataset(corrected)
    assert len(records.annotations) == 6 and {a["bbox"][2] for a in records.annotations} == {12.0}
    make_splits(corrected, SplitConfig(test_fraction=0.34, folds=2, seed=0))
    again = fit(corrected, tmp_path / "run2", load_config(None, TINY))
    assert again.state.step >= 1


def test_predict_bad_inputs(labelme_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a spinekit run"):
        predict(tmp_path, [labelme_folder], tmp_path / "out")
    with pytest.raises(InputError, match="input not found"):
        ds = tmp_path / "ds"
        ingest(labelme_folder, ds, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
        make_splits(ds, SplitConfig(test_fraction=0.34, folds=2, seed=0))
        fit(ds, tmp_path / "run", load_config(None, TINY))
        predict(tmp_path / "run", [tmp_path / "missing.png"], tmp_path / "out")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="no readable image"):
        predict(tmp_path / "run", [tmp_path / "broken.png"], tmp_path / "out2")
