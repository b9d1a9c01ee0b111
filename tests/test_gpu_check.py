"""benchmarks/gpu_check.sh --dry-run: every row of the GPU readiness table runs on CPU in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_dry_run_prints_every_row(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=150, env=env, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    checks = [row.split("|")[1].strip() for row in rows[1:]]
    assert checks == ["train maskrcnn_r50_fpn", "inference maskrcnn_r50_fpn", "train landmarks_r18",
                      "inference landmarks_r18", "gloo all_reduce", "torchrun 1 process, spinekit train",
                      "landmark recipe SMAPE (test part)"]
    assert "FAILED" not in done.stdout and "WRONG" not in done.stdout
    assert "| ok (" in rows[6] and "%" in rows[7], "torchrun trained, the recipe gave a SMAPE"


def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(SCRIPT), "--work", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert done.returncode != 0
    expected = "gpu_check: no CUDA GPU visible; use --dry-run on a CPU machine"
    assert done.stderr.strip().splitlines() == [expected]
