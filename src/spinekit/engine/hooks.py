"""A small hook protocol for the train loop (progress bars, logging, early stopping).

Hooks get the loop's :class:`LoopState` and plain dicts of numbers; each method
is optional (subclass :class:`Hook` and override what you need).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoopState:
    """Where the loop is: epoch (0-based, the one running), global step, best metric."""

    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    best_metric: float = -1.0
    best_epoch: int = -1
    epochs_since_best: int = 0
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints."""
        return {"epoch": self.epoch, "step": self.step, "total_steps": self.total_steps,
                "best_metric": self.best_metric, "best_epoch": self.best_epoch,
                "epochs_since_best": self.epochs_since_best}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LoopState:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: values[k] for k in ("epoch", "step", "total_steps", "best_metric",
                                              "best_epoch", "epochs_since_best")})


class Hook:
    """Base hook: every method does nothing."""

    def before_train(self, state: LoopState) -> None:
        """Called once before the first step (also after a resume)."""

    def after_step(self, state: LoopState, values: dict[str, float]) -> None:
        """Called after every optimiser step with the losses, lr and speed."""

    def after_epoch(self, state: LoopState, values: dict[str, float]) -> None:
        """Called after each epoch with mean losses and validation metrics (if any)."""

    def after_train(self, state: LoopState) -> None:
        """Called once when the loop ends (finished, stopped early or out of time)."""
