"""The plain train loop: optimiser, schedule, one epoch, inference over a dataset.

Shapes: images are lists of ``(C, H, W)`` float tensors; targets torchvision dicts
(see :mod:`spinekit.data.torch_dataset`); model outputs torchvision dicts with
``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,), ``masks`` (N, 1, H, W).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from spinekit.engine.config import OptimSection
from spinekit.engine.hooks import Hook, LoopState
from spinekit.errors import SpinekitError


class TrainingError(SpinekitError):
    """Training cannot go on (e.g. the loss became NaN)."""


def select_device(choice: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise SpinekitError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(choice)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPU for ``auto``/``bf16``; None (full precision) on CPU or ``off``."""
    if amp == "off" or device.type != "cuda":
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """An autocast context, or a no-op when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def make_optimizer(model: nn.Module, optim: OptimSection) -> torch.optim.Optimizer:
    """AdamW or SGD over trainable parameters; no weight decay on norms and biases."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
    return torch.optim.AdamW(groups, lr=optim.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimSection,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine to 1 % / steps x0.1 / constant."""
    warmup = max(0, min(optim.warmup_steps, total_steps // 2))
    milestones = [int(m * total_steps) for m in optim.step_milestones]

    def factor(step: int) -> float:
        if step < warmup:
            return 0.001 + (1.0 - 0.001) * step / max(1, warmup)
        if optim.schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))
        if optim.schedule == "step":
            return 0.1 ** sum(step >= m for m in milestones)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _to_device(images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]],
               device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    return ([img.to(device, non_blocking=True) for img in images],
            [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets])


def train_one_epoch(model: nn.Module, loader: Iterable[Any], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, *, device: torch.device,
                    amp_dtype: torch.dtype | None, grad_clip: float, state: LoopState,
                    hooks: Sequence[Hook] = (), should_stop: Callable[[], bool] = lambda: False,
                    ) -> dict[str, float]:
    """One pass over ``loader``; returns mean losses and images/s. Raises TrainingError on NaN."""
    model.train()
    sums: dict[str, float] = {}
    images_seen, steps, start = 0, 0, time.perf_counter()
    for images, targets in loader:
        images, targets = _to_device(images, targets, device)
        with autocast(device, amp_dtype):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {float(loss.detach())} at step {state.step} "
                                f"(epoch {state.epoch}); "
                                "lower optim.lr or check the data (cleaning report)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        state.step += 1
        steps += 1
        images_seen += len(images)
        values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()},
                  "lr": optimizer.param_groups[0]["lr"],
                  "images_per_s": images_seen / max(1e-9, time.perf_counter() - start)}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        for hook in hooks:
            hook.after_step(state, values)
        if state.step >= state.total_steps or should_stop():
            break
    mean = {k: v / max(1, steps) for k, v in sums.items() if k != "images_per_s"}
    mean["images_per_s"] = images_seen / max(1e-9, time.perf_counter() - start)
    return mean


@torch.inference_mode()
def predict_batches(model: nn.Module, batches: Iterable[tuple[list[torch.Tensor], list[Any]]], *,
                    device: torch.device, amp_dtype: torch.dtype | None,
                    ) -> Iterable[tuple[list[Any], list[dict[str, torch.Tensor]]]]:
    """Run the model over ``(images, infos)`` batches; yields ``(infos, outputs on CPU)``."""
    model.eval()
    for images, infos in batches:
        with autocast(device, amp_dtype):
            outputs = model([img.to(device, non_blocking=True) for img in images])
        yield infos, [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in o.items()}
                      for o in outputs]
