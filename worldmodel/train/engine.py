"""The training engine shared by every learner (GQN, NISO, ...).

:class:`Trainer` takes a learner name (see :mod:`worldmodel.models.registry`), its model config
and a :class:`~worldmodel.train.config.TrainConfig`, and runs the loop: device and precision
(bf16 autocast on CUDA, channels-last, optional ``torch.compile``), torchrun DDP, Adam with a
step-indexed learning-rate schedule, gradient clipping, a NaN/inf guard, held-out evaluation,
TensorBoard, a progress bar, and atomic safetensors checkpoints that a run resumes from exactly.

Determinism: before every training step the global torch RNG is reseeded from
``(seed, rank, step)``, and the loaders draw every batch from ``(seed, epoch, rank, batch)``;
a resumed run restores the weights, optimizer state, epoch and position in the epoch, so on a
deterministic device it reproduces the uninterrupted run's losses bit for bit.

Run directory (``TrainConfig.out``)::

    run.json          resolved config, versions, seed, data summary (rank 0)
    metrics.jsonl     one record per step and per evaluation
    tb/               TensorBoard events
    checkpoints/step_XXXXXXXX/   model.safetensors, config.json, train_state.{safetensors,json}
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worldmodel import checkpoint as ckpt
from worldmodel.models.registry import LearnerSpec, get_learner
from worldmodel.train import distributed as ddp
from worldmodel.train.config import RESUMABLE_CHANGES, TrainConfig, config_from_dict
from worldmodel.train.data import RunData, build_run_data
from worldmodel.train.logger import RunLogger
from worldmodel.train.schedules import learning_rate
from worldmodel.train.step_metrics import StepRecord, device_found_inf, read_records, step_values


def _add_time(metrics: dict[str, float], seconds: float, batch_size: int) -> None:
    """Add ``seconds`` to a step's ``time/step_s`` and update its throughputs."""
    dt = metrics.get("time/step_s", 0.0) + seconds
    metrics.update(
        {
            "time/step_s": dt,
            "throughput/steps_per_s": 1.0 / max(dt, 1e-9),
            "throughput/scenes_per_s": batch_size / max(dt, 1e-9),
        }
    )


def fused_supported(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused Adam(W) kernel takes ``params``: floating point, all on one CPU or CUDA device."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    )


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; training stopped before updating."""

    def __init__(self, step: int, what: str, value: float, checkpoint: Path | None) -> None:
        self.step, self.what, self.value, self.checkpoint = step, what, value, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written yet"
        super().__init__(
            f"{what} is {value} at step {step} (0-based, before its update): training stopped; {kept}. "
            "Lower --lr, set --grad-clip, or check the data."
        )


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    run_dir: Path
    """The run directory."""
    step: int
    """Completed optimiser steps."""
    checkpoint: Path | None
    """The last checkpoint written (rank 0; None elsewhere)."""
    last_train: dict[str, float]
    """Metrics of the last training step."""
    last_eval: dict[str, float] | None
    """Metrics of the last held-out evaluation."""
    seconds: float
    """Wall time of the loop."""


class LossModule(nn.Module):
    """Calls ``model.loss(batch)`` from ``forward`` so that DDP and ``torch.compile`` see it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


#: Random streams of :func:`step_seed`.
TRAIN_STREAM, EVAL_STREAM, IMAGE_STREAM = 0, 1, 2


def step_seed(seed: int, rank: int, step: int, stream: int = TRAIN_STREAM) -> int:
    """Seed of the torch RNG for one step of one rank (independent streams via SeedSequence)."""
    entropy = [int(seed), int(rank), int(stream), int(step)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def rng_state() -> dict[str, Any]:
    """All RNG states worth restoring: torch CPU and CUDA (uint8 tensors), numpy and Python."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"].to(torch.uint8))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda])


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA allocator peak on GPUs, the process's peak RSS on CPUs."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], allowed: frozenset[str] = frozenset()) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [
        f"{k} ({old.get(k)!r} in the run, {new.get(k)!r} now)"
        for k in keys
        if k not in allowed and _norm(old.get(k)) != _norm(new.get(k))
    ]


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


class Trainer:
    """Train one learner; see the module docstring.

    Args:
        learner: registry name (``"gqn"``) or a :class:`LearnerSpec`.
        model_config: the learner's config dataclass (``image_size=None`` is filled from the data).
        config: training config.
        run_data: loaders to use instead of opening ``config.data`` (tests, custom data); its
            ``info`` must hold ``image_size``.
        resume: continue from the newest checkpoint in ``config.out``; model config and the
            trajectory-relevant training fields must match the checkpoint's.
        preset: preset name, recorded in run.json.
        step_hooks: callables ``hook(model, step) -> dict of scalars or None`` run after every
            optimiser step on rank 0 (e.g. :class:`worldmodel.diagnostics.hooks.LEEHook`); what
            they return goes to TensorBoard as ``diagnostics/<name>`` and to metrics.jsonl.
    """

    def __init__(
        self,
        learner: str | LearnerSpec,
        model_config: Any,
        config: TrainConfig,
        run_data: RunData | None = None,
        resume: bool = False,
        preset: str | None = None,
        step_hooks: Sequence[Callable[[nn.Module, int], Mapping[str, float] | None]] = (),
    ) -> None:
        self.spec = learner if isinstance(learner, LearnerSpec) else get_learner(learner)
        self.model_config = model_config
        self.config = config
        self.run_data = run_data
        self.resume = resume
        self.preset = preset
        self.step_hooks = tuple(step_hooks)
        self.run_dir = Path(config.out)

    # ------------------------------------------------------------------ set-up

    def _setup_device(self) -> None:
        cfg = self.config
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = ddp.resolve_device(cfg.device, local_rank)
        self.dist = ddp.init_distributed(self.device)
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} must be divisible by the number of processes ({self.dist.world_size})"
            )
        self.batch_per_rank = cfg.batch_size // self.dist.world_size
        cuda = self.device.type == "cuda"
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        precision = cfg.precision if cfg.precision != "auto" else ("bf16" if cuda else "fp32")
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.precision = precision
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = not cfg.deterministic

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _latest_checkpoint(self) -> Path | None:
        if self.dist.is_main:  # the run's writer restores a checkpoint a kill caught mid-overwrite
            ckpt.repair_interrupted_overwrites(self.run_dir / ckpt.CHECKPOINTS_DIR)
        ddp.barrier(self.dist)
        found = ckpt.list_checkpoints(self.run_dir)
        return found[-1] if found else None

    def _check_resume(self, meta: Mapping[str, Any]) -> None:
        if meta.get("learner") != self.spec.name:
            raise ValueError(
                f"{self.run_dir}: the checkpoint is of learner {meta.get('learner')!r}, not {self.spec.name!r}"
            )
        diffs = _differences(meta["model"], dataclasses.asdict(self.model_config))
        if diffs:
            raise ValueError(f"cannot resume {self.run_dir}: the model config differs: {'; '.join(diffs)}")
        diffs = _differences(meta.get("train", {}), dataclasses.asdict(self.config), RESUMABLE_CHANGES)
        if diffs:
            raise ValueError(
                f"cannot resume {self.run_dir}: training options differ: {'; '.join(diffs)} "
                f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change on resume)"
            )

    def _check_world_size(self, train_state: Mapping[str, Any]) -> None:
        """Resume only on the world size the run was saved with, unless ``allow_reshard``: the
        per-rank batches, the data shards and the RNG streams all depend on it, so a different
        world size continues the run, but not exactly as it would have gone."""
        saved = int(train_state.get("world_size", 1))
        if saved == self.dist.world_size:
            return
        if not self.config.allow_reshard:
            raise ValueError(
                f"cannot resume {self.run_dir}: it was saved with world size {saved}, this launch has "
                f"{self.dist.world_size}; relaunch with {saved} processes, or pass --allow-reshard to re-shard "
                "(the continued run is then not identical to an uninterrupted one)"
            )
        if self.dist.is_main:
            print(
                f"warning: resuming a world-size-{saved} run on {self.dist.world_size} processes (--allow-reshard): "
                "data order and RNG streams change from here on",
                file=sys.stderr,
            )

    def _resolved(self) -> dict[str, Any]:
        return {
            "learner": self.spec.name,
            "preset": self.preset,
            "model": dataclasses.asdict(self.model_config),
            "train": dataclasses.asdict(self.config),
        }

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        """Run training to ``config.steps``; returns a :class:`TrainResult`.

        Raises:
            TrainingDiverged: the loss or gradient norm became non-finite (nothing is saved for
                that step; earlier checkpoints are kept).
        """
        self._setup_device()
        try:
            return self._fit()
        finally:
            ddp.shutdown(self.dist)

    def _fit(self) -> TrainResult:
        latest = self._check_run_dir()
        data = self._prepare_data()
        step, epoch, batch_in_epoch = self._build_model(latest)
        if self.dist.is_main:
            self._write_run_metadata(data, step)
        self.logger = RunLogger(self.run_dir, enabled=self.dist.is_main, resume_step=step if self.resume else None)
        return self._loop(data, step, epoch, batch_in_epoch, latest)

    def _check_run_dir(self) -> Path | None:
        """The newest checkpoint of the run dir; refuses to overwrite one, or to resume from none."""
        latest = self._latest_checkpoint()
        if latest is not None and not self.resume:
            raise ValueError(
                f"{self.run_dir} already holds checkpoints (newest {latest.name}); "
                "pass --resume to continue it or choose another --out"
            )
        if self.resume and latest is None:
            raise FileNotFoundError(f"--resume: {self.run_dir} holds no checkpoint to resume from")
        return latest

    def _prepare_data(self) -> RunData:
        """Build the loaders (learner-specific data first, e.g. NISO's --data digits, else scene
        loaders) and fill the model config's data-dependent fields (the same on every rank)."""
        cfg, dist = self.config, self.dist
        if self.run_data is None:
            custom = self.spec.custom_data(cfg, self.model_config, self.batch_per_rank)
            if custom is not None:
                self.run_data, self.model_config = custom
        if self.run_data is None:
            self.run_data = build_run_data(
                self.spec.loader,
                cfg.data,
                cfg.val_data,
                cfg.val_fraction if cfg.eval_every or cfg.val_data else 0.0,
                self.batch_per_rank,
                cfg.seed,
                cfg.num_workers,
                self.spec.loader_kwargs(self.model_config),
                pin_memory=self.device.type == "cuda",
            )
        data = self.run_data
        if any(f.name == "image_size" for f in dataclasses.fields(self.model_config)):
            size = data.info.get("image_size")
            if self.model_config.image_size is None:
                self.model_config = dataclasses.replace(self.model_config, image_size=int(size))
            elif size is not None and int(size) != self.model_config.image_size:
                raise ValueError(
                    f"the data has {size}px images but the model config asks for "
                    f"image_size={self.model_config.image_size}; collect data with --size "
                    f"{self.model_config.image_size} or pass --image-size {size}"
                )

        self.model_config = self.spec.configure_from_data(
            self.model_config, data.info, lambda: next(iter(data.train_loader))
        )
        if dist.enabled:  # data-dependent fields must agree: every rank takes rank 0's config
            values = ddp.broadcast_json(dataclasses.asdict(self.model_config), dist, self.device)
            self.model_config = config_from_dict(type(self.model_config), values, f"{self.spec.name} model config")
        return data

    def _build_model(self, latest: Path | None) -> tuple[int, int, int]:
        """Model, optimiser and the wrapped (DDP / compiled) loss module, restored from ``latest``
        on resume; returns (step, epoch, batch_in_epoch) to continue from."""
        cfg, dist = self.config, self.dist
        torch.manual_seed(cfg.seed)  # the same initialisation on every rank; DDP also broadcasts rank 0's
        model = self.spec.build(self.model_config).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        opt_cls = torch.optim.AdamW if cfg.weight_decay > 0 else torch.optim.Adam
        # The fused kernel: one pass per parameter, and a device-side ``found_inf`` that lets the
        # metrics be read every few steps (see worldmodel.train.step_metrics).
        self.fused = fused_supported(params)
        optimizer = opt_cls(
            params,
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay,
            fused=self.fused or None,
        )
        step, epoch, batch_in_epoch = 0, 0, 0
        if self.resume:
            state, meta = ckpt.load_model_state(latest)
            self._check_resume(meta)
            model.load_state_dict(state, strict=True)
            train_state = ckpt.load_train_state(latest)
            self._check_world_size(train_state)
            optimizer.load_state_dict(train_state["optimizer"])
            for group in optimizer.param_groups:  # the kernel follows this machine, not the checkpoint's
                group["fused"] = self.fused or None
            step, epoch, batch_in_epoch = (
                int(train_state["step"]),
                int(train_state["epoch"]),
                int(train_state["batch_in_epoch"]),
            )
            set_rng_state(train_state["rng"])
        self.model, self.optimizer = model, optimizer

        wrapped: nn.Module = LossModule(model)
        if dist.enabled:
            # The learners hold no running statistics (GroupNorm, no BatchNorm): their buffers are
            # constants that DDP broadcasts once at construction, not before every forward.
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[self.device] if self.device.type == "cuda" else None, broadcast_buffers=False
            )
        if cfg.compile:
            wrapped = torch.compile(wrapped)
        self.wrapped = wrapped
        return step, epoch, batch_in_epoch

    def _write_run_metadata(self, data: RunData, step: int) -> None:
        from worldmodel.run_metadata import read_run_metadata, write_run_metadata

        extra: dict[str, Any] = {
            "data": data.info,
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
        }
        if self.resume:
            extra["resumed_from_step"] = step
            with contextlib.suppress(FileNotFoundError, ValueError):
                extra["first_created"] = read_run_metadata(self.run_dir).get("created")
        write_run_metadata(self.run_dir, self._resolved(), self.config.seed, extra)

    def _loop(self, data: RunData, step: int, epoch: int, batch_in_epoch: int, last_ckpt: Path | None) -> TrainResult:
        """The training loop: one batch, one update, then logging / eval / images / checkpoints."""
        from tqdm.auto import tqdm

        cfg, dist = self.config, self.dist
        bar = tqdm(
            total=cfg.steps,
            initial=step,
            unit="step",
            dynamic_ncols=True,
            disable=not (dist.is_main and cfg.progress),
            desc=f"train {self.spec.name}",
        )
        loader = data.train_loader
        batches_per_epoch = len(loader)
        last_train: dict[str, float] = {}
        last_eval: dict[str, float] | None = None
        pending: list[StepRecord] = []  # steps whose metrics are still on the device
        self._last_ckpt, self._found_inf = last_ckpt, None
        it = None
        t_start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model.train()
        try:
            if data.val_loader is not None and step == 0 and not self.resume:
                last_eval = self.evaluate(0)  # the untrained baseline of the held-out curve
            while step < cfg.steps:
                # a step's time: its batch + update (+ the device wait at a read), not eval/checkpoints
                t_prev = time.perf_counter()
                if it is None:
                    it = self._epoch_iterator(loader, epoch, batch_in_epoch)
                try:
                    batch = next(it)
                except StopIteration:
                    epoch, batch_in_epoch, it = epoch + 1, 0, None
                    continue
                record = self._train_step(batch, step)
                step += 1
                batch_in_epoch += 1
                if batch_in_epoch >= batches_per_epoch:
                    epoch, batch_in_epoch, it = epoch + 1, 0, None
                dt = time.perf_counter() - t_prev
                record.host["epoch"] = epoch
                _add_time(record.host, dt, cfg.batch_size)
                pending.append(record)
                bar.update(1)
                if not self._read_due(step):
                    continue
                t_read = time.perf_counter()
                read, error = self._read(pending)
                if read:  # the wait for the device to finish the pending steps is the last one's time
                    _add_time(read[-1], time.perf_counter() - t_read, cfg.batch_size)
                for record, metrics in zip(pending, read, strict=False):  # the steps before a bad one
                    last_train = metrics
                    last_eval = self._after_step(data, record.step + 1, batch, metrics, bar, last_eval)
                if error is not None:
                    raise error
                pending = []
                if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == cfg.steps:
                    self._last_ckpt = self.save_checkpoint(step, epoch, batch_in_epoch) or self._last_ckpt
                self._run_step_hooks(step)
        finally:
            bar.close()
            self.logger.close()
        return TrainResult(
            self.run_dir,
            step,
            self._last_ckpt if dist.is_main else None,
            last_train,
            last_eval,
            time.perf_counter() - t_start,
        )

    def _read_due(self, step: int) -> bool:
        """Whether the metrics are read after (1-based) ``step``: at log, evaluation, image and
        checkpoint steps, at the last step, and at every step when step hooks run or the
        optimiser has no device-side skip."""
        cfg = self.config
        due = step == cfg.steps or not self.fused or bool(self.step_hooks)
        for every in (cfg.log_every, cfg.ckpt_every, cfg.image_every):  # the same on every rank
            due = due or bool(every and step % every == 0)
        if self.run_data.val_loader is not None and cfg.eval_every:
            due = due or step % cfg.eval_every == 0
        return due

    @staticmethod
    def _epoch_iterator(loader: Any, epoch: int, start_batch: int) -> Any:
        """An iterator over ``epoch`` of ``loader`` from batch ``start_batch`` on (a mid-epoch resume).

        Scene loaders start there without drawing or reading the skipped batches; other loaders
        (learner-specific ones) are advanced past them."""
        if start_batch and "start_batch" in inspect.signature(loader.set_epoch).parameters:
            loader.set_epoch(epoch, start_batch=start_batch)
            return iter(loader)
        loader.set_epoch(epoch)
        it = iter(loader)
        for _ in range(start_batch):
            next(it)
        return it

    def _after_step(
        self,
        data: RunData,
        step: int,
        batch: Any,
        metrics: dict[str, float],
        bar: Any,
        last_eval: dict[str, float] | None,
    ) -> dict[str, float] | None:
        """Log the step's metrics, evaluate on held-out data and write images when due; returns the
        newest held-out metrics."""
        cfg, logger = self.config, self.logger
        logger.record("train", step, metrics)
        if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.steps):
            metrics["memory/peak_mb"] = peak_memory_mb(self.device)
            logger.scalars(step, metrics, "train")
            bar.set_postfix({k: f"{metrics[k]:.4g}" for k in ("loss",) if k in metrics}, refresh=False)
        if data.val_loader is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
            last_eval = self.evaluate(step)
            bar.set_postfix(
                {"loss": f"{metrics['loss']:.4g}", "val": f"{last_eval.get('loss', float('nan')):.4g}"}, refresh=False
            )
        if self.dist.is_main and cfg.image_every and (step % cfg.image_every == 0 or step == cfg.steps):
            self._log_images(step, batch)
        return last_eval

    def _run_step_hooks(self, step: int) -> None:
        if not self.dist.is_main:
            return
        for hook in self.step_hooks:
            extra = hook(self.model, step)
            if extra:
                self.logger.record("diagnostics", step, extra)
                self.logger.scalars(step, extra, "diagnostics")

    def _train_step(self, batch: Mapping[str, Any], step: int) -> StepRecord:
        """One update; its metrics stay on the device until :meth:`_read` (no host sync here)."""
        from worldmodel.data.transfer import to_device

        cfg, dist, model = self.config, self.dist, self.model
        torch.manual_seed(step_seed(cfg.seed, dist.rank, step))
        lr = learning_rate(step, cfg.lr, cfg.lr_final, cfg.lr_anneal_steps, cfg.lr_schedule, cfg.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if hasattr(model, "set_step"):
            model.set_step(step)
        batch = to_device(batch, self.device, channels_last=self.channels_last)
        with self._autocast():
            out = self.wrapped(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads)
        if cfg.grad_clip > 0:  # no pass over the gradients when clipping is off
            torch.nn.utils.clip_grads_with_norm_(grads, cfg.grad_clip, grad_norm)
        # One all-reduce per step carries the metrics, the gradient norm and the non-finite flags
        # (their mean over ranks is > 0 when any rank saw one), so every rank takes the same branch.
        record = StepRecord(step, list(out), ddp.all_reduce_mean(step_values(out, grad_norm), dist), lr, {})
        if self.fused:  # skip this update (and all later ones) on the device if any flag is set
            self._found_inf = device_found_inf(record.values, self._found_inf)
            self.optimizer.found_inf = self._found_inf
        else:  # the unfused optimisers have no found_inf: read before the update
            _, error = self._read([record])
            if error is not None:
                raise error
        self.optimizer.step()
        return record

    def _read(self, records: list[StepRecord]) -> tuple[list[dict[str, float]], TrainingDiverged | None]:
        """The metrics of ``records`` up to the first non-finite step (one host sync), and the
        error naming that step (None when all were finite); its update and every later one were
        not applied."""
        metrics: list[dict[str, float]] = []
        for record, read in zip(records, read_records(records), strict=True):
            n = len(record.names)
            if read[-2] > 0:
                return metrics, TrainingDiverged(
                    record.step, "the loss", read[record.names.index("loss")], self._last_ckpt
                )
            if read[-1] > 0:
                return metrics, TrainingDiverged(record.step, "the gradient norm", read[n], self._last_ckpt)
            metrics.append({**dict(zip(record.names, read[:n])), "lr": record.lr, "grad_norm": read[n], **record.host})
        return metrics, None

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Mean held-out metrics over the first ``eval_batches`` validation batches (same ones each time)."""
        from worldmodel.data.transfer import to_device

        cfg, dist, model = self.config, self.dist, self.model
        loader = self.run_data.val_loader
        eval_fn = getattr(model, "eval_loss", None) or model.loss
        was_training = model.training
        model.eval()
        torch.manual_seed(step_seed(cfg.seed, dist.rank, 0, EVAL_STREAM))  # fixed draws: evaluations are comparable
        loader.set_epoch(0)
        sums: dict[str, torch.Tensor] = {}
        n = 0
        for i, batch in enumerate(loader):
            if i >= max(1, cfg.eval_batches):
                break
            batch = to_device(batch, self.device, channels_last=self.channels_last)
            with self._autocast():
                out = eval_fn(batch)
            for k, v in out.items():
                sums[k] = sums.get(k, 0) + v.detach().float().reshape(())
            n += 1
        model.train(was_training)
        names = list(sums)
        values = ddp.all_reduce_mean(torch.stack([sums[k] / max(n, 1) for k in names]), dist)
        metrics = {k: float(v) for k, v in zip(names, values.tolist())}
        self.logger.record("eval", step, metrics)
        self.logger.scalars(step, metrics, "val")
        return metrics

    @torch.no_grad()
    def _log_images(self, step: int, train_batch: Mapping[str, Any]) -> None:
        from worldmodel.data.transfer import to_device

        visualise = getattr(self.model, "visualise", None)
        if visualise is None:
            return
        batch = train_batch
        if self.run_data.val_loader is not None:
            self.run_data.val_loader.set_epoch(0)
            batch = next(iter(self.run_data.val_loader))
        was_training = self.model.training
        self.model.eval()
        rng = torch.get_rng_state()
        torch.manual_seed(step_seed(self.config.seed, self.dist.rank, 0, IMAGE_STREAM))
        with self._autocast():
            images = visualise(to_device(batch, self.device, channels_last=self.channels_last))
        torch.set_rng_state(rng)
        self.model.train(was_training)
        self.logger.images(step, images)

    def save_checkpoint(self, step: int, epoch: int, batch_in_epoch: int) -> Path | None:
        """Write ``checkpoints/step_XXXXXXXX`` atomically (rank 0), keep the newest ``keep_checkpoints``."""
        path = None
        if self.dist.is_main:
            train_state = {
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(),
                "world_size": self.dist.world_size,
            }
            meta = {**self._resolved(), "step": step, "data": self.run_data.info}
            path = ckpt.save_checkpoint(
                self.run_dir / ckpt.CHECKPOINTS_DIR / ckpt.step_dir_name(step),
                self.model.state_dict(),
                meta,
                train_state,
            )
            ckpt.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        ddp.barrier(self.dist)
        return path


def train(learner: str, model_config: Any, config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Convenience wrapper: ``Trainer(learner, model_config, config, **kwargs).fit()``."""
    return Trainer(learner, model_config, config, **kwargs).fit()


def resolve_configs(
    learner: str, preset: str | None, model_overrides: Mapping[str, Any], train_overrides: Mapping[str, Any]
) -> tuple[Any, TrainConfig]:
    """Model and training configs: dataclass defaults, then the preset, then explicit overrides."""
    spec = get_learner(learner)
    model_cfg = spec.make_config(preset, **model_overrides)
    values = dataclasses.asdict(TrainConfig())
    values.update(spec.preset(preset).get("train", {}))
    values.update(train_overrides)
    return model_cfg, config_from_dict(TrainConfig, values, "training config")
