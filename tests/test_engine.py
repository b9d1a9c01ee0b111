"""Training engine on a tiny dataset: run folder, checkpoints, exact resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from spinekit.engine.checkpoint import load_checkpoint
from spinekit.engine.config import load_config
from spinekit.engine.evaluate import evaluate_predictions, evaluate_run
from spinekit.engine.train import fit
from spinekit.errors import InputError

TINY = ["data.size=[64,64]", "data.workers=0", "train.batch_size=2", "train.epochs=2",
        "optim.lr=0.001", "optim.warmup_steps=1", "train.threads=1"]


def test_fit_writes_run_folder_and_metrics(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = fit(dataset, run, load_config(None, [*TINY, "train.log_every=1"]))
    assert result.state.step == 2 and result.state.epoch == 1
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["size"] == [64, 64] and saved["optim"]["lr"] == 0.001
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} >= {"val", "epoch"}
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2], "train.log_every=1"
    assert all(0.0 <= r["segm_AP"] <= 1.0 or r["segm_AP"] == -1 for r in records if r["kind"] == "val")
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["classes"] == ["F", "E"] and payload["loop"]["step"] == 2
    metrics = evaluate_run(run, split="test", device="cpu")
    assert metrics["split"] == "test" and "AP50" in metrics["segm"] and "image_level" in metrics
    assert (run / "metrics.json").exists() and (run / "predictions" / "test.json").exists()
    again = evaluate_predictions(run / "predictions" / "test.json", dataset, split="test",
                                 out=tmp_path / "m.json")
    assert again["segm"]["AP"] == metrics["segm"]["AP"]


def test_resume_is_exact(dataset: Path, tmp_path: Path) -> None:
    straight = fit(dataset, tmp_path / "a", load_config(None, TINY))
    first = fit(dataset, tmp_path / "b", load_config(None, [*TINY, "train.max_steps=2",
                                                          "train.epochs=1"]))
    assert first.state.step == 1
    resumed = fit(dataset, tmp_path / "b", load_config(None, [*TINY, "train.max_steps=2"]), resume=True)
    assert resumed.state.step == straight.state.step == 2
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def test_existing_run_needs_resume_and_bad_config_keys(dataset: Path, tmp_path: Path) -> None:
    fit(dataset, tmp_path / "run", load_config(None, [*TINY, "train.epochs=1"]))
    with pytest.raises(InputError, match="--resume"):
        fit(dataset, tmp_path / "run", load_config(None, TINY))
    with pytest.raises(ValueError, match=r"unknown config key 'optim\.lrr'"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="unknown model"):
        fit(dataset, tmp_path / "other", load_config(None, [*TINY, "model.name=unet9000"]))


def test_nan_loss_raises_clear_error(dataset: Path, tmp_path: Path) -> None:
    from spinekit.engine.loop import TrainingError

    with pytest.raises(TrainingError, match="loss became"):
        fit(dataset, tmp_path / "nan", load_config(None, [*TINY, "optim.lr=1e12", "optim.grad_clip=0",
                                                          "train.epochs=3"]))


def test_early_stopping(dataset: Path, tmp_path: Path) -> None:
    overrides = [*TINY, "train.epochs=6", "train.early_stop_patience=1", "optim.lr=0.00001"]
    result = fit(dataset, tmp_path / "early", load_config(None, overrides))
    assert result.state.stop_reason is not None and "no validation improvement" in result.state.stop_reason
    assert result.state.epoch < 5


def test_checkpoint_of_another_model_and_empty_test_split(dataset: Path, tmp_path: Path) -> None:
    from spinekit.engine.runs import load_run

    fit(dataset, tmp_path / "run", load_config(None, [*TINY, "train.epochs=1"]))
    splits = json.loads((dataset / "splits.json").read_text())
    splits["test"] = []
    (dataset / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(InputError, match="test split has no images"):
        evaluate_run(tmp_path / "run", split="test", device="cpu")
    for name in ("best.pt", "last.pt"):
        ckpt = tmp_path / "run" / "checkpoints" / name
        payload = torch.load(ckpt, weights_only=True)
        payload["config"]["model"]["name"] = "maskrcnn_r50_fpn"
        torch.save(payload, ckpt)
    with pytest.raises(InputError, match="does not fit model 'maskrcnn_r50_fpn'"):
        load_run(tmp_path / "run")
