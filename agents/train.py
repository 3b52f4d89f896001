"""Train one SB3 agent on pixels, a frozen representation or the state (``wm agent train``).

A run writes into its output directory (see :mod:`agents.artifacts`): the resolved config,
metadata (versions, encoder SHA-256), TensorBoard logs, ``evaluations.csv`` (step 0, every
``eval_freq`` env steps, and at the end unless a periodic evaluation fell within half an
interval of it; deterministic policy on a separate evaluation env, reseeded with ``eval_seed``
before every evaluation so that all evaluations of all runs use the same episodes), SB3 checkpoints, the final
``model.zip`` and, last and atomically, ``done.json``.

``model.zip`` is Stable-Baselines3's own format. It contains pickled Python objects: load only
models you produced yourself, never ones from untrusted sources.
"""

from __future__ import annotations

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
from agents.config import OFF_POLICY, AgentDefaults, TrainConfig, defaults_for
from worldmodel.run_metadata import RUN_FILE, write_run_metadata

#: SB3 class name of each algorithm key.
ALGO_CLASSES: dict[str, str] = {"ppo": "PPO", "a2c": "A2C", "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "dqn": "DQN"}


class ReplayMemoryError(ValueError):
    """The replay buffer of an off-policy run would not fit in the available memory."""


def available_memory_bytes() -> "int | None":
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
    available: "int | None" = None,
    log: "Any" = print,
) -> int:
    """Print the replay buffer's memory estimate; raise :class:`ReplayMemoryError` when it exceeds
    ``memory_fraction`` of the available RAM. Returns the estimate in bytes."""
    need = estimate_replay_memory(observation_space, action_space, buffer_size, optimize_memory_usage)
    avail = available_memory_bytes() if available is None else available
    gb = 1024**3
    avail_txt = "unknown" if avail is None else f"{avail / gb:.2f} GiB"
    log(
        f"replay buffer: {buffer_size:,} transitions x {need / max(buffer_size, 1) / 1024:.1f} KiB = {need / gb:.2f} GiB "
        f"(optimize_memory_usage={optimize_memory_usage}; available RAM {avail_txt})"
    )
    if avail is not None and need > memory_fraction * avail:
        hint = "" if optimize_memory_usage else ", or set optimize_memory_usage=True (with replay_buffer_kwargs={'handle_timeout_termination': False})"
        raise ReplayMemoryError(
            f"the replay buffer needs {need / gb:.2f} GiB but only {memory_fraction:.0%} of the available "
            f"{avail / gb:.2f} GiB may be used; lower buffer_size (--hp buffer_size=N) or the image size{hint}"
        )
    return need


def resolve_hyperparams(config: TrainConfig, image_size: "int | None") -> tuple[AgentDefaults, dict[str, Any]]:
    """Defaults of (algo, obs) merged with the config's overrides; pixel CNNs chosen by size."""
    from agents.extractors import pixel_policy_kwargs

    defaults = defaults_for(config.algo, config.obs)
    hp = dict(defaults.hyperparams)
    if config.obs == "pixels" and image_size is not None:
        pk = dict(hp.get("policy_kwargs", {}))
        pk.update(pixel_policy_kwargs(image_size))
        if pk:
            hp["policy_kwargs"] = pk
    overrides = dict(config.hyperparams)
    if "policy_kwargs" in overrides and "policy_kwargs" in hp:
        merged = dict(hp["policy_kwargs"])
        merged.update(overrides.pop("policy_kwargs"))
        hp["policy_kwargs"] = merged
    hp.update(overrides)
    return defaults, hp


def _image_size(space: spaces.Space) -> "int | None":
    if isinstance(space, spaces.Box) and len(space.shape) == 3:
        return int(space.shape[1])  # channel-first after VecTransposeImage
    return None


def _evaluate(model: Any, env: Any, episodes: int, seed: int) -> tuple[list[float], list[int], "list[bool] | None"]:
    from stable_baselines3.common.evaluation import evaluate_policy

    from agents.callbacks import episode_success

    successes: list[bool] = []

    def on_step(locals_: dict, globals_: dict) -> None:
        if locals_["done"] and episode_success(locals_["info"]) is not None:
            successes.append(bool(episode_success(locals_["info"])))

    env.seed(seed)  # the same evaluation episodes every time (see SuccessEvalCallback)
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True, callback=on_step
    )
    return list(returns), list(lengths), successes or None


#: Files and folders a run creates; an unfinished run's are removed before it restarts.
_RUN_FILES = (EVALUATIONS_FILE, PROGRESS_FILE, MODEL_FILE, DONE_FILE, RUN_FILE, CONFIG_FILE, LOG_FILE)
_RUN_DIRS = ("tb", "checkpoints", "eval")


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
            raise ValueError(f"--out {out} is a non-empty directory that does not hold an agent run; choose another --out")
    for name in _RUN_FILES:
        if name != LOG_FILE:  # the log is opened by the parent process of a compare run
            (out / name).unlink(missing_ok=True)
    for name in _RUN_DIRS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def train_agent(config: TrainConfig, log: Any = print) -> dict[str, Any]:
    """Run one training run; returns the contents of its ``done.json``.

    A directory that already holds a finished run is left alone (its ``done.json`` is returned)
    unless ``config.overwrite``; an unfinished one is cleared and trained from scratch.
    """
    config.validate()
    out = Path(config.out)
    if is_finished(out) and not config.overwrite:
        log(f"{out}: already finished ({DONE_FILE} exists); pass --overwrite to train again")
        return read_json(out / DONE_FILE)
    _prepare_run_dir(out)

    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.utils import get_device, set_random_seed

    from agents.callbacks import (
        EvaluationRecorder,
        ProgressCallback,
        RecordAfterEval,
        SuccessEvalCallback,
    )
    from agents.make_env import make_env, resolve_encoder

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    set_random_seed(config.seed)
    device = get_device(config.device)

    encoder = resolve_encoder(config.encoder, str(device)) if config.obs == "repr" else None
    env_kwargs = dict(config.env_kwargs)
    if config.camera is not None:
        env_kwargs.setdefault("camera", config.camera)
    if config.size is not None and config.obs != "state":
        env_kwargs.setdefault("size", config.size)
    defaults = defaults_for(config.algo, config.obs)
    n_envs = config.n_envs or defaults.n_envs
    eval_freq = max(n_envs, (config.eval_freq // n_envs) * n_envs)
    if eval_freq != config.eval_freq:
        log(f"eval_freq {config.eval_freq} rounded to {eval_freq} (a multiple of n_envs={n_envs})")
    common = dict(
        obs=config.obs,
        encoder=encoder,
        vec_env=config.vec_env,
        env_kwargs=env_kwargs,
        append_viewpoint=config.append_viewpoint,
        context_views=config.context_views,
        aggregate=config.aggregate,
    )
    env = make_env(config.env_id, n_envs=n_envs, seed=config.seed, **common)
    eval_env = None
    try:
        eval_env = make_env(config.env_id, n_envs=1, seed=config.eval_seed, **{**common, "vec_env": "dummy"})
        image_size = _image_size(env.observation_space) if config.obs == "pixels" else None
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

        resolved = replace(config, n_envs=n_envs, eval_freq=eval_freq, env_kwargs=env_kwargs)
        write_json_atomic(out / CONFIG_FILE, {**resolved.to_dict(), "policy": defaults.policy, "resolved_hyperparams": json_safe(hp)})
        enc_meta = None
        if encoder is not None:
            enc_meta = {
                "path": str(config.encoder),
                **(encoder_checksum(config.encoder) or {}),
                "name": encoder.name,
                "feature_dim": encoder.feature_dim,
                "image_size": encoder.image_size,
                "metadata": json_safe(encoder.metadata),
            }
        write_run_metadata(
            out,
            json_safe(resolved.to_dict()),
            config.seed,
            extra={
                "encoder": enc_meta,
                "device": str(device),
                "observation_space": str(env.observation_space),
                "action_space": str(env.action_space),
                "model_format": "SB3 zip (contains pickled objects): load only models you produced yourself",
            },
        )

        algo_cls = getattr(sb3, ALGO_CLASSES[config.algo])
        model = algo_cls(defaults.policy, env, seed=config.seed, device=device, tensorboard_log=str(out / "tb"), verbose=0, **hp)

        recorder = EvaluationRecorder(out)
        t0 = time.monotonic()
        returns, lengths, succ = _evaluate(model, eval_env, config.eval_episodes, config.eval_seed)
        row = recorder.add(0, returns, lengths, succ)
        log(f"eval at step 0: mean return {row['mean_return']:.3f}")
        callbacks = [
            ProgressCallback(config.steps, out, show=config.progress, desc=f"{config.algo}/{config.obs} seed {config.seed}"),
            SuccessEvalCallback(
                eval_env,
                eval_seed=config.eval_seed,
                callback_after_eval=RecordAfterEval(recorder),
                n_eval_episodes=config.eval_episodes,
                eval_freq=eval_freq // n_envs,  # EvalCallback counts calls: each call is n_envs env steps
                log_path=str(out / "eval"),
                deterministic=True,
                verbose=0,
            ),
        ]
        if config.checkpoint_freq > 0:
            callbacks.append(
                CheckpointCallback(save_freq=max(1, config.checkpoint_freq // n_envs), save_path=str(out / "checkpoints"), name_prefix="model")
            )
        model.learn(total_timesteps=config.steps, callback=CallbackList(callbacks), tb_log_name=f"{config.algo}_{config.obs}")
        train_s = time.monotonic() - t0
        # A final evaluation, unless a periodic one fell within half an interval of the end (on-policy
        # algorithms overshoot `steps` by up to one rollout; a second point there only adds noise).
        if model.num_timesteps - recorder.last_timesteps >= eval_freq / 2:
            returns, lengths, succ = _evaluate(model, eval_env, config.eval_episodes, config.eval_seed)
            recorder.add(model.num_timesteps, returns, lengths, succ)
        model.save(str(out / MODEL_FILE))
        final = recorder.rows[-1]
        done = {
            "obs": config.obs,
            "algo": config.algo,
            "seed": config.seed,
            "timesteps": int(model.num_timesteps),
            "final_mean_return": final["mean_return"],
            "final_success_rate": final["success_rate"],
            "evaluations": len(recorder.rows),
            "wall_s": round(time.monotonic() - t0, 3),
            "steps_per_s": round(model.num_timesteps / max(train_s, 1e-9), 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(out / DONE_FILE, done)  # last: marks the run finished
        log(f"done: {model.num_timesteps} steps, final mean return {final['mean_return']:.3f}, {done['steps_per_s']:.0f} steps/s -> {out}")
        return done
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()


def parse_overrides(items: "list[str] | None", what: str = "--hp") -> dict[str, Any]:
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

