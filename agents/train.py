"""Train one SB3 agent on pixels, pixels + viewpoint, a frozen representation or the state (``wm agent train``).

A run writes into its output directory (see :mod:`agents.artifacts`): the resolved config,
metadata (versions, encoder SHA-256), TensorBoard logs, ``evaluations.csv`` (step 0, every
``eval_freq`` env steps, and at the end unless a periodic evaluation fell within half an
interval of it; deterministic policy on a separate evaluation env, episode k reset with seed
``eval_seed + k``, so all evaluations of all runs play the same episodes), resumable
checkpoints (:mod:`agents.checkpoints`), the final ``model.zip`` (+ ``vecnormalize.json`` when
the run normalises) and, last and atomically, ``done.json``.

A run that was killed continues from its latest checkpoint when started again with the same
settings: model, optimiser state, VecNormalize statistics, replay buffer (off-policy), the
evaluations up to that step and the TensorBoard run all continue; ``num_timesteps`` goes on from
the checkpoint's step. (Not bit-identical to an uninterrupted run: the envs restart episodes.)

``model.zip`` is Stable-Baselines3's own format. It contains pickled Python objects: load only
models you produced yourself, never ones from untrusted sources.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from agents.artifacts import (
    CONFIG_FILE,
    DONE_FILE,
    EVALUATIONS_FILE,
    LOG_FILE,
    MODEL_FILE,
    PROGRESS_FILE,
    encoder_checksum,
    is_finished,
    json_safe,
    read_json,
    write_json_atomic,
)
from agents.checkpoints import (
    CHECKPOINT_DIR,
    VECNORMALIZE_FILE,
    Checkpoint,
    latest_checkpoint,
    load_replay_buffer,
    load_vecnormalize,
    save_vecnormalize,
    vec_normalize_of,
    write_checkpoint,
)
from agents.config import OFF_POLICY, PIXEL_MODES, AgentDefaults, TrainConfig, defaults_for
from worldmodel.run_metadata import RUN_FILE, write_run_metadata

#: SB3 class name of each algorithm key.
ALGO_CLASSES: dict[str, str] = {"ppo": "PPO", "a2c": "A2C", "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "dqn": "DQN"}


class ReplayMemoryError(ValueError):
    """The replay buffer of an off-policy run would not fit in the available memory."""


def available_memory_bytes() -> int | None:
    """Available RAM in bytes (psutil if installed, else ``MemAvailable`` of /proc/meminfo)."""
    try:
        import psutil  # optional

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _nbytes(space: spaces.Space) -> int:
    if isinstance(space, spaces.Dict):
        return sum(_nbytes(s) for s in space.spaces.values())
    if isinstance(space, spaces.Discrete):
        return 8  # SB3 stores discrete actions/observations as int64
    shape = space.shape or (1,)
    return int(np.prod(shape)) * np.dtype(space.dtype).itemsize


def estimate_replay_memory(
    observation_space: spaces.Space, action_space: spaces.Space, buffer_size: int, optimize_memory_usage: bool = False
) -> int:
    """Bytes SB3's ReplayBuffer allocates: observations (twice unless memory-optimised), actions,
    rewards, dones and timeouts (float32 each) for ``buffer_size`` transitions."""
    obs = _nbytes(observation_space)
    per_transition = obs * (1 if optimize_memory_usage else 2) + _nbytes(action_space) + 3 * 4
    return int(buffer_size) * per_transition


def check_replay_memory(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    buffer_size: int,
    optimize_memory_usage: bool = False,
    memory_fraction: float = 0.8,
    available: int | None = None,
    log: Any = print,
) -> int:
    """Print the replay buffer's memory estimate; raise :class:`ReplayMemoryError` when it exceeds
    ``memory_fraction`` of the available RAM. Returns the estimate in bytes."""
    need = estimate_replay_memory(observation_space, action_space, buffer_size, optimize_memory_usage)
    avail = available_memory_bytes() if available is None else available
    gb = 1024**3
    avail_txt = "unknown" if avail is None else f"{avail / gb:.2f} GiB"
    log(
        f"replay buffer: {buffer_size:,} transitions x {need / max(buffer_size, 1) / 1024:.1f} KiB = {need / gb:.2f} "
        f"GiB (optimize_memory_usage={optimize_memory_usage}; available RAM {avail_txt})"
    )
    if avail is not None and need > memory_fraction * avail:
        hint = (
            ""
            if optimize_memory_usage
            else ", or set optimize_memory_usage=True (SB3 needs "
            "replay_buffer_kwargs={'handle_timeout_termination': False}, which learns time-limit truncations as "
            "terminal states: the other obs modes would no longer be comparable)"
        )
        raise ReplayMemoryError(
            f"the replay buffer needs {need / gb:.2f} GiB but only {memory_fraction:.0%} of the available "
            f"{avail / gb:.2f} GiB may be used; lower buffer_size (--hp buffer_size=N) or the image size{hint}"
        )
    return need


def resolve_hyperparams(config: TrainConfig, image_size: int | None) -> tuple[AgentDefaults, dict[str, Any]]:
    """Defaults of (algo, obs) merged with the config's overrides; pixel CNNs chosen by size."""
    from agents.extractors import dict_policy_kwargs, pixel_policy_kwargs

    defaults = defaults_for(config.algo, config.obs)
    hp = dict(defaults.hyperparams)
    if config.obs in PIXEL_MODES and image_size is not None:
        pk = dict(hp.get("policy_kwargs", {}))
        pk.update(pixel_policy_kwargs(image_size) if config.obs == "pixels" else dict_policy_kwargs(image_size))
        if pk:
            hp["policy_kwargs"] = pk
    overrides = dict(config.hyperparams)
    if "policy_kwargs" in overrides and "policy_kwargs" in hp:
        merged = dict(hp["policy_kwargs"])
        merged.update(overrides.pop("policy_kwargs"))
        hp["policy_kwargs"] = merged
    hp.update(overrides)
    return defaults, hp


def _image_size(space: spaces.Space) -> int | None:
    """Side of the (channel-first) image of an obs space, or of its ``pixels`` key."""
    if isinstance(space, spaces.Dict) and "pixels" in space.spaces:
        space = space.spaces["pixels"]
    if isinstance(space, spaces.Box) and len(space.shape) == 3:
        return int(space.shape[1])  # channel-first after VecTransposeImage
    return None


#: Files and folders a run creates; an unfinished run's are removed before it restarts from scratch.
#: The final model is saved here first, then renamed to ``model.zip``.
_MODEL_TMP = "model.tmp.zip"
_RUN_FILES = (
    EVALUATIONS_FILE,
    PROGRESS_FILE,
    MODEL_FILE,
    _MODEL_TMP,
    VECNORMALIZE_FILE,
    DONE_FILE,
    RUN_FILE,
    CONFIG_FILE,
    LOG_FILE,
)
_RUN_DIRS = ("tb", CHECKPOINT_DIR, "eval")
#: Config fields that may differ when a run resumes (how it runs, not what it computes).
RESUME_IGNORED_FIELDS: tuple[str, ...] = (
    "out",
    "overwrite",
    "progress",
    "threads",
    "device",
    "resume",
    "memory_fraction",
    "vec_env",
    "save_replay_buffer",
)


def _prepare_run_dir(out: Path) -> None:
    """Create ``out`` or clear what an interrupted run left there.

    Refuses a non-empty directory that is not an agent run (so a mistyped ``--out`` never
    deletes anything else)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = {p.name for p in out.iterdir()}
    if entries and not entries & {PROGRESS_FILE, EVALUATIONS_FILE, DONE_FILE}:
        foreign = entries - set(_RUN_FILES) - set(_RUN_DIRS)
        if foreign or (out / CONFIG_FILE).is_file() and "algo" not in read_json(out / CONFIG_FILE):
            raise ValueError(
                f"--out {out} is a non-empty directory that does not hold an agent run; choose another --out"
            )
    for name in _RUN_FILES:
        if name != LOG_FILE:  # the log is opened by the parent process of a compare run
            (out / name).unlink(missing_ok=True)
    for name in _RUN_DIRS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def _resume_mismatch(out: Path, resolved: TrainConfig) -> list[str]:
    """Fields whose stored value (``config.json``) differs from ``resolved``; ``["config.json"]`` if unreadable."""
    try:
        stored = read_json(out / CONFIG_FILE)
    except (OSError, ValueError):
        return [CONFIG_FILE]
    new = json_safe(resolved.to_dict())
    return [
        f"{k}: {stored[k]!r} -> {v!r}"
        for k, v in new.items()
        if k in stored and k not in RESUME_IGNORED_FIELDS and stored[k] != v
    ]


def _purge_tensorboard_after(tb_dir: Path, tb_name: str, step: int) -> None:
    """Make TensorBoard drop what the killed session logged after ``step`` (a purge event).

    The resumed session writes into the same run folder (SB3 with ``reset_num_timesteps=False``);
    a ``SessionLog.START`` event at ``step + 1`` (``SummaryWriter(purge_step=...)``) tells
    TensorBoard to discard earlier events from that step on, so the curves have no doubled part.
    """
    from stable_baselines3.common.utils import get_latest_run_id
    from torch.utils.tensorboard import SummaryWriter

    run_id = get_latest_run_id(str(tb_dir), tb_name)
    if run_id < 1:
        return
    writer = SummaryWriter(log_dir=str(tb_dir / f"{tb_name}_{run_id}"), purge_step=int(step) + 1)
    writer.close()


def train_agent(config: TrainConfig, log: Any = print) -> dict[str, Any]:
    """Run one training run; returns the contents of its ``done.json``.

    A directory that already holds a finished run is left alone (its ``done.json`` is returned)
    unless ``config.overwrite``. An unfinished one resumes from its latest checkpoint
    (``config.resume``, with the same settings; a change is refused with the differing fields),
    or, without a checkpoint, is cleared and trained from scratch.
    """
    config.validate()
    out = Path(config.out)
    if is_finished(out) and not config.overwrite:
        log(f"{out}: already finished ({DONE_FILE} exists); pass --overwrite to train again")
        return read_json(out / DONE_FILE)

    resolved = _resolve(config)
    ckpt = _checkpoint_to_resume(config, resolved, out)
    if resolved.eval_freq != config.eval_freq:
        log(f"eval_freq {config.eval_freq} rounded to {resolved.eval_freq} (a multiple of n_envs={resolved.n_envs})")

    import torch
    from stable_baselines3.common.utils import get_device, set_random_seed

    from agents.env_stack import resolve_encoder

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    set_random_seed(config.seed)
    device = get_device(config.device)
    encoder = resolve_encoder(config.encoder, str(device)) if config.obs == "repr" else None
    train_seed = config.seed * 1000  # sub-env i: seed * 1000 + i, far from the evaluation seeds
    env, eval_env = _make_envs(config, resolved, encoder, train_seed)
    try:
        defaults, hp = _hyperparams_for(config, env, log)
        gamma = float(hp.get("gamma", 0.99))
        from agents.env_stack import add_normalization

        env = add_normalization(env, config.obs, config.normalize, config.normalize_reward, gamma)
        eval_env = add_normalization(
            eval_env, config.obs, config.normalize, config.normalize_reward, gamma, evaluation=True
        )
        _write_run_files(out, resolved, defaults.policy, hp, encoder, str(device), env, ckpt)
        return _learn(
            config, out, env, eval_env, defaults.policy, hp, device, train_seed, resolved.eval_freq, ckpt, log
        )
    finally:
        env.close()
        eval_env.close()


def _checkpoint_to_resume(config: TrainConfig, resolved: TrainConfig, out: Path) -> Checkpoint | None:
    """The checkpoint to resume from (same settings required), or None after clearing ``out``."""
    ckpt = latest_checkpoint(out) if config.resume and not config.overwrite and out.is_dir() else None
    if ckpt is None:
        _prepare_run_dir(out)
        return None
    diffs = _resume_mismatch(out, resolved)
    if diffs:
        raise ValueError(
            f"--out {out} holds an unfinished run (checkpoint at step {ckpt.step}) with other settings: "
            + "; ".join(diffs)
            + ". Rerun with the same settings to resume it, or pass --overwrite (or --no-resume) "
            "to start again from scratch"
        )
    return ckpt


def _make_envs(config: TrainConfig, resolved: TrainConfig, encoder: Any, train_seed: int) -> tuple[Any, Any]:
    """The training VecEnv (``n_envs`` sub-envs) and the single evaluation env, same stack."""
    from agents.env_stack import make_env

    common = dict(
        obs=config.obs,
        encoder=encoder,
        env_kwargs=resolved.env_kwargs,
        append_viewpoint=config.append_viewpoint,
        context_views=config.context_views,
        aggregate=config.aggregate,
        frame_stack=config.frame_stack,
    )
    env = make_env(config.env_id, n_envs=resolved.n_envs, seed=train_seed, vec_env=resolved.vec_env, **common)
    try:
        eval_env = make_env(config.env_id, n_envs=1, seed=None, vec_env="dummy", **common)
    except BaseException:
        env.close()
        raise
    return env, eval_env


def _hyperparams_for(config: TrainConfig, env: Any, log: Any) -> tuple[AgentDefaults, dict[str, Any]]:
    """Resolved hyperparameters; checks the replay buffer fits in memory and adds the defaults'
    Gaussian action noise for off-policy algorithms on Box actions."""
    from stable_baselines3.common.noise import NormalActionNoise

    image_size = _image_size(env.observation_space) if config.obs in PIXEL_MODES else None
    defaults, hp = resolve_hyperparams(config, image_size)
    if config.algo in OFF_POLICY:
        check_replay_memory(
            env.observation_space,
            env.action_space,
            int(hp.get("buffer_size", 1_000_000)),
            bool(hp.get("optimize_memory_usage", False)),
            config.memory_fraction,
            log=log,
        )
    if defaults.action_noise_std > 0 and "action_noise" not in hp and isinstance(env.action_space, spaces.Box):
        half_range = (env.action_space.high - env.action_space.low) / 2.0
        hp["action_noise"] = NormalActionNoise(np.zeros_like(half_range), defaults.action_noise_std * half_range)
    return defaults, hp


def _learn(
    config: TrainConfig,
    out: Path,
    env: Any,
    eval_env: Any,
    policy: str,
    hp: dict[str, Any],
    device: Any,
    train_seed: int,
    eval_freq: int,
    ckpt: Checkpoint | None,
    log: Any,
) -> dict[str, Any]:
    """Build (or resume) the SB3 model, learn with fixed-seed evaluations and checkpoints, write
    the final model and ``done.json``; returns the done record."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import CallbackList

    from agents.callbacks import (
        CheckpointEveryCallback,
        EvaluationRecorder,
        FixedSeedEvalCallback,
        ProgressCallback,
        evaluate_on_seeds,
        read_evaluations,
    )
    from agents.reference import evaluation_seeds

    algo_cls = getattr(sb3, ALGO_CLASSES[config.algo])
    tb_dir = out / "tb"
    tb_name = f"{config.algo}_{config.arm_name}"
    model, resumed_from = _build_or_resume(algo_cls, policy, env, hp, config, device, tb_dir, tb_name, ckpt, log)
    env.seed(train_seed)  # the model seeded the envs with `seed`: use the training seeds

    seeds = evaluation_seeds(config.eval_seed, config.eval_episodes)
    recorder = EvaluationRecorder(
        out,
        rows=read_evaluations(out / EVALUATIONS_FILE, ckpt.step) if ckpt is not None else None,
        wall_offset_s=ckpt.wall_s if ckpt is not None else 0.0,
    )
    t0 = time.monotonic()
    start_steps = int(model.num_timesteps)
    if ckpt is None:
        first = evaluate_on_seeds(model, eval_env, seeds)
        row = recorder.add(0, first.returns, first.lengths, first.successes)
        log(f"eval at step 0: mean return {row['mean_return']:.3f}")

    def save_checkpoint() -> None:
        c = write_checkpoint(out, model, recorder.elapsed_s, resumed_from, with_replay_buffer=config.save_replay_buffer)
        log(f"checkpoint at step {c.step}: {c.path}")

    callbacks = [
        ProgressCallback(
            config.steps, out, show=config.progress, desc=f"{config.algo}/{config.arm_name} seed {config.seed}"
        ),
        FixedSeedEvalCallback(eval_env, seeds, eval_freq, recorder),
    ]
    if config.checkpoint_freq > 0:
        callbacks.append(CheckpointEveryCallback(config.checkpoint_freq, save_checkpoint, last_step=start_steps))
    remaining = config.steps - start_steps
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=CallbackList(callbacks),
            tb_log_name=tb_name,
            reset_num_timesteps=ckpt is None,
        )
    train_s = time.monotonic() - t0
    # A final evaluation, unless a periodic one fell within half an interval of the end (on-policy
    # algorithms overshoot `steps` by up to one rollout; a second point there only adds noise).
    if model.num_timesteps - recorder.last_timesteps >= eval_freq / 2:
        from stable_baselines3.common.vec_env import sync_envs_normalization

        sync_envs_normalization(env, eval_env)
        last = evaluate_on_seeds(model, eval_env, seeds)
        recorder.add(model.num_timesteps, last.returns, last.lengths, last.successes)
    _save_final_model(out, model, env)
    done = _done_record(config, model, recorder, resumed_from, start_steps, train_s)
    write_json_atomic(out / DONE_FILE, done)  # last: marks the run finished
    log(
        f"done: {model.num_timesteps} steps, final mean return {done['final_mean_return']:.3f}, "
        f"{done['steps_per_s']:.0f} steps/s -> {out}"
    )
    return done


def _resolve(config: TrainConfig) -> TrainConfig:
    """The config with what defaults decide filled in: arm name, env kwargs (camera, size),
    n_envs, eval_freq (a multiple of n_envs) and the vec env kind."""
    from agents.env_stack import resolve_vec_env

    env_kwargs = dict(config.env_kwargs)
    if config.camera is not None:
        env_kwargs.setdefault("camera", config.camera)
    if config.size is not None and config.obs != "state":
        env_kwargs.setdefault("size", config.size)
    n_envs = config.n_envs or defaults_for(config.algo, config.obs).n_envs
    eval_freq = max(n_envs, (config.eval_freq // n_envs) * n_envs)
    vec_env = resolve_vec_env(config.vec_env, config.obs, n_envs)
    return replace(
        config, arm=config.arm_name, n_envs=n_envs, eval_freq=eval_freq, env_kwargs=env_kwargs, vec_env=vec_env
    )


def _write_run_files(
    out: Path, resolved: TrainConfig, policy: str, hp: dict[str, Any], encoder: Any, device: str, env: Any, ckpt: Any
) -> None:
    """``config.json`` (a fresh run only: a resumed run keeps its own) and ``run.json``
    (versions, seed, encoder checksum, spaces, the checkpoint resumed from)."""
    if ckpt is None:
        write_json_atomic(
            out / CONFIG_FILE, {**resolved.to_dict(), "policy": policy, "resolved_hyperparams": json_safe(hp)}
        )
    write_run_metadata(
        out,
        json_safe(resolved.to_dict()),
        resolved.seed,
        extra={
            "encoder": _encoder_metadata(resolved.encoder, encoder) if encoder is not None else None,
            "device": device,
            "observation_space": str(env.observation_space),
            "action_space": str(env.action_space),
            "resumed_from_step": None if ckpt is None else ckpt.step,
            "model_format": "SB3 zip (contains pickled objects): load only models you produced yourself",
        },
    )


def _done_record(
    config: TrainConfig, model: Any, recorder: Any, resumed_from: tuple[int, ...], start_steps: int, train_s: float
) -> dict[str, Any]:
    """The contents of ``done.json``: what ran, the final evaluation, timing."""
    final = recorder.rows[-1]
    return {
        "arm": config.arm_name,
        "obs": config.obs,
        "algo": config.algo,
        "seed": config.seed,
        "timesteps": int(model.num_timesteps),
        "final_mean_return": final["mean_return"],
        "final_success_rate": final["success_rate"],
        "evaluations": len(recorder.rows),
        "eval_seed": config.eval_seed,
        "eval_episodes": config.eval_episodes,
        "resumed_from": list(resumed_from),
        "wall_s": round(recorder.elapsed_s, 3),
        "steps_per_s": round((model.num_timesteps - start_steps) / max(train_s, 1e-9), 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _encoder_metadata(path: str, encoder: Any) -> dict[str, Any]:
    """What run.json records of the frozen encoder: path, checksum, name, sizes, metadata."""
    return {
        "path": str(path),
        **(encoder_checksum(path) or {}),
        "name": encoder.name,
        "feature_dim": encoder.feature_dim,
        "image_size": encoder.image_size,
        "metadata": json_safe(encoder.metadata),
    }


def _build_or_resume(
    algo_cls: Any,
    policy: str,
    env: Any,
    hp: dict[str, Any],
    config: TrainConfig,
    device: Any,
    tb_dir: Path,
    tb_name: str,
    ckpt: Any,
    log: Any,
) -> tuple[Any, tuple[int, ...]]:
    """A fresh SB3 model, or the one of checkpoint ``ckpt`` (normalisation statistics, replay
    buffer and TensorBoard continued); returns ``(model, steps of the checkpoints resumed from)``."""
    if ckpt is None:
        model = algo_cls(policy, env, seed=config.seed, device=device, tensorboard_log=str(tb_dir), verbose=0, **hp)
        return model, ()
    vecnorm = vec_normalize_of(env)
    if vecnorm is not None:
        if ckpt.vecnormalize_path is None:
            raise ValueError(f"checkpoint {ckpt.path} has no {VECNORMALIZE_FILE}, but the run normalises")
        load_vecnormalize(ckpt.vecnormalize_path, vecnorm)
    model = algo_cls.load(str(ckpt.model_path), env=env, device=device, tensorboard_log=str(tb_dir), verbose=0)
    # SB3 reseeds from the saved seed at load; continue with another stream than the start's.
    model.set_random_seed(config.seed + ckpt.step)
    if config.algo in OFF_POLICY and ckpt.replay_buffer_path is not None and config.save_replay_buffer:
        n = load_replay_buffer(ckpt.replay_buffer_path, model.replay_buffer)
        log(f"replay buffer: {n:,} transitions restored")
    _purge_tensorboard_after(tb_dir, tb_name, ckpt.step)
    log(f"resuming from checkpoint at step {ckpt.step} ({ckpt.path})")
    return model, (*ckpt.resumed_from, ckpt.step)


def _save_final_model(out: Path, model: Any, env: Any) -> None:
    """``model.zip`` (atomically) and, when the run normalises, its statistics as JSON."""
    tmp_model = out / _MODEL_TMP
    model.save(str(tmp_model))
    os.replace(tmp_model, out / MODEL_FILE)
    vecnorm = vec_normalize_of(env)
    if vecnorm is not None:
        save_vecnormalize(out / VECNORMALIZE_FILE, vecnorm)


def parse_overrides(items: list[str] | None, what: str = "--hp") -> dict[str, Any]:
    """Parse ``key=value`` strings; values are JSON when they parse (numbers, lists, dicts), else strings."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
