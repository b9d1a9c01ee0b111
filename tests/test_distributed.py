"""DDP: two CPU processes (gloo) train a few steps through torchrun; rank 0 writes the checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spinekit.data.ingest import IngestOptions, ingest
from spinekit.data.splits import SplitConfig, make_splits
from spinekit.engine.checkpoint import load_checkpoint


@pytest.mark.slow
def test_torchrun_two_cpu_processes(labelme_folder: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ingest(labelme_folder, ds, IngestOptions(format="labelme", patient_pattern=r"^(P\d+)_"))
    make_splits(ds, SplitConfig(test_fraction=0.34, folds=2, seed=0))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", "29517", "-m", "spinekit", "train", str(ds), "--out", str(run),
               "--device", "cpu",
               "--set", "data.size=[64,64]", "--set", "data.workers=0", "--set", "train.batch_size=1",
               "--set", "train.epochs=2", "--set", "train.threads=1", "--set", "data.val_part=none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    # fold 0 trains on 2 images; 2 processes with batch 1 make 1 step per epoch; 2 epochs
    assert payload["loop"]["step"] == 2 and payload["loop"]["epoch"] == 1
    assert (run / "log.jsonl").read_text().count('"kind": "epoch"') == 2, "only rank 0 writes the log"
    assert not any(k.startswith("module.") for k in payload["model"]), "rank 0 saves the unwrapped model"
