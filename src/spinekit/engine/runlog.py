"""``RUN/log.jsonl``: one JSON object per line, written as the loop goes (a hook)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spinekit.engine.hooks import Hook, LoopState
from spinekit.io.atomic import atomic_write_text, json_text


def _step(line: str) -> int | None:
    """The ``step`` of one log line; None for a line that is not a JSON object with an integer
    step (e.g. the half-written last line of a killed run: dropped on resume)."""
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None
    step = entry.get("step", 0) if isinstance(entry, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


class RunLog(Hook):
    """Appends ``{"kind": "train", ...}`` every ``every`` steps and one line per epoch.

    On resume the lines after the checkpoint's step are dropped first (rewritten
    atomically), so the log matches the restored state.
    """

    def __init__(self, path: Path, *, enabled: bool = True, keep_until_step: int = 0,
                 every: int = 10) -> None:
        self.path = path
        self.enabled = enabled
        self.every = every
        if enabled and keep_until_step > 0 and path.exists():
            kept = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if (step := _step(line)) is not None and step <= keep_until_step]
            atomic_write_text(path, "".join(f"{line}\n" for line in kept))
        elif enabled and keep_until_step == 0 and path.exists():
            atomic_write_text(path, "")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json_text(record, indent=None) + "\n")  # strict JSON: NaN -> null

    def after_step(self, state: LoopState, values: dict[str, float]) -> None:
        if state.step % self.every == 0:
            self.write({"kind": "train", "epoch": state.epoch, "step": state.step,
                        **{k: round(v, 6) for k, v in values.items()}})

    def after_epoch(self, state: LoopState, values: dict[str, float]) -> None:
        val = {k[4:]: v for k, v in values.items() if k.startswith("val_")}
        if val:
            self.write({"kind": "val", "epoch": state.epoch, "step": state.step,
                        **{k: round(v, 6) for k, v in val.items()}})
        self.write({"kind": "epoch", "epoch": state.epoch, "step": state.step,
                    **{k: round(v, 6) for k, v in values.items() if not k.startswith("val_")}})

