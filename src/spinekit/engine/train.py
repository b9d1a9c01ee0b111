"""``spinekit train``: fit a model on a dataset split into a run folder.

Run folder layout::

    RUN/
      config.yaml          the resolved config (written first)
      dataset.json         {"dataset": abs path, "fold": k, "classes": [...]}
      log.jsonl            one JSON per line: {"kind": "train"|"val", "epoch", "step", ...}
      checkpoints/last.pt  after every epoch (atomic), for --resume
      checkpoints/best.pt  best validation metric so far (segm AP by default)

``--resume`` continues exactly from ``last.pt``: model, optimiser, scheduler,
RNG states and loop position; the data order of each epoch is seeded by
(seed, epoch), so a resumed run repeats the uninterrupted one. The step and
epoch limits are those of the config given now (a larger ``train.max_steps`` or
``train.epochs`` trains on to it; the learning-rate schedule is recomputed for
the new length); with nothing left to train the run is refused and
``config.yaml`` is left as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spinekit.data.torch_dataset import DatasetConfig, SpineDataset, collate
from spinekit.engine import distributed
from spinekit.engine.checkpoint import (
    BEST,
    LAST,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from spinekit.engine.config import Config, dump_config, to_dict
from spinekit.engine.hooks import Hook, LoopState
from spinekit.engine.inference import evaluate_model
from spinekit.engine.loop import (
    autocast_dtype,
    make_optimizer,
    make_scheduler,
    select_device,
    train_one_epoch,
)
from spinekit.engine.runlog import RunLog
from spinekit.errors import InputError, UsageError
from spinekit.io.atomic import atomic_write_json
from spinekit.models.registry import MODELS, build_model
from spinekit.models.semantic import SemanticPostprocess
from spinekit.transforms.augment import Augment

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What a training run produced."""

    run: Path
    state: LoopState
    seconds: float
    best_metrics: dict[str, Any] | None


def dataset_config(config: Config) -> DatasetConfig:
    """The torch dataset settings of a run config (flips only for training)."""
    d = config.data
    augment = Augment(brightness=d.aug_brightness, contrast=d.aug_contrast, gamma=d.aug_gamma,
                      rotate_deg=d.aug_rotate_deg, scale=d.aug_scale, translate=d.aug_translate)
    return DatasetConfig(size=d.size, keep_aspect=d.keep_aspect, channels=d.channels,  # type: ignore[arg-type]
                         contrast=d.contrast, flip_prob=d.flip_prob, flip_pairs=d.flip_pairs,
                         augment=augment)


def eval_dataset_config(config: Config) -> DatasetConfig:
    """Like :func:`dataset_config` without augmentation."""
    return dataclasses.replace(dataset_config(config), flip_prob=0.0, augment=Augment())


def _datasets(root: Path, config: Config) -> tuple[SpineDataset, SpineDataset | None]:
    train = SpineDataset(root, part=config.data.train_part, fold=config.data.fold,
                         config=dataset_config(config), splits_file=config.data.splits)
    if len(train) == 0:
        raise InputError(root, f"the {config.data.train_part} part of fold {config.data.fold} has no images")
    val = None
    if config.data.val_part != "none":
        val = SpineDataset(root, part=config.data.val_part, fold=config.data.fold,
                           config=eval_dataset_config(config), splits_file=config.data.splits)
        if len(val) == 0:
            raise InputError(root, f"the {config.data.val_part} part has no images to validate on; "
                             "set data.val_part=none to train without validation")
    return train, val


def _loader(train: SpineDataset, config: Config, epoch: int) -> torch.utils.data.DataLoader[Any]:
    generator = torch.Generator().manual_seed(config.train.seed * 1000 + epoch)
    sampler: Any = None
    if distributed.world_size() > 1:
        sampler = torch.utils.data.DistributedSampler(train, shuffle=True, seed=config.train.seed)
        sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(
        train, batch_size=config.train.batch_size, shuffle=sampler is None, sampler=sampler,
        collate_fn=collate, num_workers=config.data.workers, generator=generator,
        persistent_workers=False, drop_last=len(train) > config.train.batch_size,
    )


def _check_work_left(run: Path, state: LoopState, config: Config) -> None:
    """A resumed run must have steps left under the (possibly raised) limits; else refuse."""
    if state.epoch < config.train.epochs and state.step < state.total_steps:
        return
    raise InputError(run, f"nothing left to train: the run has done {state.step} steps in {state.epoch} "
                     f"epochs, the limits are train.max_steps={config.train.max_steps} "
                     f"({state.total_steps} steps) and train.epochs={config.train.epochs}; "
                     "raise one of them to continue (config.yaml left unchanged)")


def _write_run_files(run: Path, dataset: Path, config: Config, classes: list[str]) -> None:
    """config.yaml and dataset.json, written only once training is sure to start."""
    if distributed.is_main():
        dump_config(config, run / "config.yaml")
        atomic_write_json(run / "dataset.json", {"dataset": str(dataset.resolve()),
                                                 "fold": config.data.fold, "classes": classes})


def _metric(metrics: dict[str, Any] | None, name: str = "segm_AP") -> float:
    if not metrics:
        return -1.0
    kind, _, key = name.partition("_")
    return float(metrics.get(kind, {}).get(key, -1.0))


@dataclass
class _Session:
    """Everything the epoch loop needs, built once."""

    config: Config
    run: Path
    model: torch.nn.Module
    core: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    amp: torch.dtype | None
    train: SpineDataset
    val: SpineDataset | None
    state: LoopState
    runlog: RunLog
    classes: list[str]

    def save(self, which: str) -> None:
        if distributed.is_main():
            save_checkpoint(checkpoint_path(self.run, which), model=self.core, optimizer=self.optimizer,
                            scheduler=self.scheduler, loop=self.state.to_dict(),
                            config=to_dict(self.config), classes=self.classes)


def _build_session(dataset: Path, run: Path, config: Config, resume: bool) -> _Session:
    if config.model.name not in MODELS:
        raise UsageError(f"unknown model {config.model.name!r}; choose one of {', '.join(MODELS)}")
    device = select_device(config.train.device)
    distributed.init(device)
    torch.manual_seed(config.train.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    train, val = _datasets(dataset, config)
    if MODELS[config.model.name].kind == "landmarks":
        _require_corners(dataset, train)
    classes = [c["name"] for c in sorted(train.records.categories, key=lambda c: int(c["id"]))]
    model = build_model(config.model.name, num_classes=train.num_classes, in_channels=config.data.channels,
                        image_size=max(config.data.size), norm=config.model.norm,
                        weights=config.model.weights, trainable_layers=config.model.trainable_layers,
                        postprocess=SemanticPostprocess(min_area=config.model.min_area,
                                                        split_touching=config.model.split_touching),
                        expected_count=config.model.expected_count)
    model.to(device)
    optimizer = make_optimizer(model, config.optim)
    steps_per_epoch = max(1, len(train) // (config.train.batch_size * distributed.world_size()))
    total = config.train.max_steps or config.train.epochs * steps_per_epoch
    scheduler = make_scheduler(optimizer, config.optim, total)
    state = LoopState(total_steps=total)
    if not resume and checkpoint_path(run, LAST).exists():
        raise InputError(run, "already holds a trained run; use --resume to continue it or another --out")
    if resume:
        state = _restore(run, model, optimizer, scheduler, classes)
        state.total_steps = total  # the new limits; the lr schedule is stretched to them
        _check_work_left(run, state, config)
        log.info("resuming %s at epoch %d, step %d of %d", run, state.epoch, state.step, total)
    _write_run_files(run, dataset, config, classes)
    wrapped: torch.nn.Module = model
    if distributed.world_size() > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    runlog = RunLog(run / "log.jsonl", enabled=distributed.is_main(),
                    keep_until_step=state.step if resume else 0, every=config.train.log_every)
    return _Session(config, run, wrapped, model, optimizer, scheduler, device,
                    autocast_dtype(config.train.amp, device), train, val, state, runlog, classes)


def _require_corners(root: Path, train: SpineDataset) -> None:
    missing, total = train.missing_corners()
    if missing:
        raise InputError(root, f"{missing} of {total} instances of the {len(train)} training images have "
                         "no 4 vertebra corners, which landmark models need (AASCE ingest keeps them); "
                         "train a mask model on this dataset instead")


def _restore(run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LambdaLR, classes: list[str]) -> LoopState:
    payload = load_checkpoint(checkpoint_path(run, LAST))
    if payload["classes"] != classes:
        raise InputError(checkpoint_path(run, LAST), f"checkpoint classes {payload['classes']} differ from "
                         f"the dataset's {classes}")
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise InputError(checkpoint_path(run, LAST), "checkpoint is from another model "
                         f"({' '.join(str(exc).split())[:160]})") from exc
    try:
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
        state = LoopState.from_dict(payload["loop"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(checkpoint_path(run, LAST), "cannot resume: optimiser, schedule, random or loop "
                         f"state does not fit this run ({type(exc).__name__}: {exc})") from exc
    state.epoch += 1
    return state


def fit(dataset: str | Path, run: str | Path, config: Config, *, resume: bool = False,
        hooks: Sequence[Hook] = ()) -> FitResult:
    """Train ``config.model.name`` on ``dataset`` into the run folder ``run``."""
    start = time.perf_counter()
    s = _build_session(Path(dataset), Path(run), config, resume)
    all_hooks = [s.runlog, *hooks]
    deadline = None if config.train.time_limit_s is None else start + config.train.time_limit_s
    best: dict[str, Any] | None = None
    def out_of_time() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    for hook in all_hooks:
        hook.before_train(s.state)
    while s.state.epoch < config.train.epochs and s.state.step < s.state.total_steps:
        values = train_one_epoch(s.model, _loader(s.train, config, s.state.epoch), s.optimizer, s.scheduler,
                                 device=s.device, amp_dtype=s.amp, grad_clip=config.optim.grad_clip,
                                 state=s.state, hooks=all_hooks, should_stop=out_of_time)
        metrics = _validate(s) if _due(s) else None
        values.update({f"val_{k}": v for k, v in _flat(metrics).items()})
        best = _after_epoch(s, metrics, best)
        for hook in all_hooks:
            hook.after_epoch(s.state, values)
        if distributed.broadcast_flag(_should_stop(s, out_of_time())):
            break
        s.state.epoch += 1
    for hook in all_hooks:
        hook.after_train(s.state)
    distributed.barrier()
    distributed.cleanup()
    return FitResult(Path(run), s.state, time.perf_counter() - start, best)


def _due(s: _Session) -> bool:
    last_epoch = s.state.epoch + 1 >= s.config.train.epochs or s.state.step >= s.state.total_steps
    every = max(1, s.config.train.eval_every)
    return s.val is not None and distributed.is_main() and ((s.state.epoch + 1) % every == 0 or last_epoch)


def _validate(s: _Session) -> dict[str, Any]:
    assert s.val is not None
    return evaluate_model(s.core, s.val, device=s.device, amp_dtype=s.amp,
                          batch_size=s.config.train.batch_size, eval_config=s.config.eval)


def _flat(metrics: dict[str, Any] | None) -> dict[str, float]:
    if not metrics:
        return {}
    return {f"{kind}_{key}": float(metrics[kind][key]) for kind in ("bbox", "segm") if kind in metrics
            for key in ("AP", "AP50") if key in metrics[kind]}


def _after_epoch(s: _Session, metrics: dict[str, Any] | None,
                 best: dict[str, Any] | None) -> dict[str, Any] | None:
    score = _metric(metrics)
    if metrics is not None and score > s.state.best_metric:
        s.state.best_metric, s.state.best_epoch, s.state.epochs_since_best = score, s.state.epoch, 0
        best = metrics
        s.save(BEST)
    elif metrics is not None:
        s.state.epochs_since_best += 1
    if s.val is None:
        s.save(BEST)
    s.save(LAST)
    return best


def _should_stop(s: _Session, out_of_time: bool) -> bool:
    patience = s.config.train.early_stop_patience
    if patience > 0 and s.state.epochs_since_best >= patience:
        reason = f"no validation improvement for {patience} evaluations"
    elif out_of_time:
        reason = f"time limit of {s.config.train.time_limit_s} s reached"
    elif s.state.step >= s.state.total_steps:
        reason = "all steps done"
    else:
        return False
    s.state.stop_reason = reason
    log.info("stopping after epoch %d: %s", s.state.epoch, reason)
    return True
