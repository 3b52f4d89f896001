"""Configuration of agent runs: per-(algorithm, observation mode) defaults and the run config.

Observation modes of an agent:

* ``pixels``: the env's uint8 frames, channel-first (``VecTransposeImage``), ``CnnPolicy``.
* ``repr``: features of a frozen encoder (:mod:`agents.wrappers`), ``MlpPolicy``.
* ``state``: the env's low-dimensional state vector, ``MlpPolicy`` (the upper reference).

The defaults are chosen to run on a 2-core CPU (small networks, few epochs over pixel batches)
and are documented in docs/agents.md. Any SB3 constructor argument can be overridden per run
(``TrainConfig.hyperparams`` / ``wm agent train --hp key=value``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from envs.spaces import check_choice

AGENT_OBS_MODES: tuple[str, ...] = ("pixels", "repr", "state")
ALGOS: tuple[str, ...] = ("ppo", "a2c", "sac", "td3", "ddpg", "dqn")
ON_POLICY: tuple[str, ...] = ("ppo", "a2c")
OFF_POLICY: tuple[str, ...] = ("sac", "td3", "ddpg", "dqn")
VEC_ENVS: tuple[str, ...] = ("dummy", "subproc")
AGGREGATES: tuple[str, ...] = ("sum", "mean")
#: Env observation mode requested for each agent observation mode.
ENV_OBS: dict[str, str] = {"pixels": "pixels", "repr": "pixels+viewpoint", "state": "state"}


@dataclass(frozen=True)
class AgentDefaults:
    """Defaults for one (algorithm, observation mode) pair."""

    policy: str
    """SB3 policy name: ``CnnPolicy`` for pixels, ``MlpPolicy`` for features and state."""
    n_envs: int
    """Number of parallel training environments."""
    hyperparams: dict[str, Any]
    """Keyword arguments of the SB3 algorithm's constructor (``policy_kwargs`` included)."""
    action_noise_std: float = 0.0
    """Std of Gaussian action noise (fraction of the action range) for TD3/DDPG exploration."""


_MLP_SMALL = {"net_arch": [64, 64]}
_MLP_MEDIUM = {"net_arch": [128, 128]}
_MLP_WIDE = {"net_arch": [256, 256]}

# PPO: identical settings for every obs mode (only the torso differs), so that env steps to a
# return level compare observations, not hyperparameters. 8 envs x 256 steps = 2048 per update;
# the toolkit's Jaco reach learns from state with these (docs/agents.md, learnability).
_PPO = dict(n_steps=256, batch_size=256, n_epochs=10, learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0)
_A2C = dict(n_steps=8, learning_rate=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0)
_OFF_VECTOR = dict(buffer_size=100_000, learning_starts=1_000, batch_size=256, learning_rate=3e-4, gamma=0.99, train_freq=1, gradient_steps=1)
# Pixels: smaller buffer, one copy of each frame (optimize_memory_usage; needs handle_timeout_termination=False).
_OFF_PIXELS = dict(
    buffer_size=50_000,
    learning_starts=1_000,
    batch_size=128,
    learning_rate=3e-4,
    gamma=0.99,
    train_freq=1,
    gradient_steps=1,
    optimize_memory_usage=True,
    replay_buffer_kwargs={"handle_timeout_termination": False},
)
_DQN_VECTOR = dict(buffer_size=50_000, learning_starts=1_000, batch_size=64, learning_rate=1e-4, train_freq=4, target_update_interval=1_000, exploration_fraction=0.2)
_DQN_PIXELS = dict(_DQN_VECTOR, optimize_memory_usage=True, replay_buffer_kwargs={"handle_timeout_termination": False})


def _mk(policy: str, n_envs: int, hp: dict, policy_kwargs: "dict | None" = None, noise: float = 0.0) -> AgentDefaults:
    hp = copy.deepcopy(hp)
    if policy_kwargs:
        hp["policy_kwargs"] = copy.deepcopy(policy_kwargs)
    return AgentDefaults(policy=policy, n_envs=n_envs, hyperparams=hp, action_noise_std=noise)


#: (algorithm, obs mode) -> defaults. Pixel CNNs are chosen by image size at run time
#: (:func:`agents.extractors.pixel_policy_kwargs`).
DEFAULTS: dict[tuple[str, str], AgentDefaults] = {
    ("ppo", "state"): _mk("MlpPolicy", 8, _PPO, _MLP_MEDIUM),
    ("ppo", "repr"): _mk("MlpPolicy", 8, _PPO, _MLP_MEDIUM),
    ("ppo", "pixels"): _mk("CnnPolicy", 8, _PPO, _MLP_MEDIUM),
    ("a2c", "state"): _mk("MlpPolicy", 4, _A2C, _MLP_SMALL),
    ("a2c", "repr"): _mk("MlpPolicy", 4, _A2C, _MLP_WIDE),
    ("a2c", "pixels"): _mk("CnnPolicy", 4, _A2C),
    ("sac", "state"): _mk("MlpPolicy", 1, _OFF_VECTOR, _MLP_WIDE),
    ("sac", "repr"): _mk("MlpPolicy", 1, _OFF_VECTOR, _MLP_WIDE),
    ("sac", "pixels"): _mk("CnnPolicy", 1, _OFF_PIXELS),
    ("td3", "state"): _mk("MlpPolicy", 1, _OFF_VECTOR, _MLP_WIDE, 0.1),
    ("td3", "repr"): _mk("MlpPolicy", 1, _OFF_VECTOR, _MLP_WIDE, 0.1),
    ("td3", "pixels"): _mk("CnnPolicy", 1, _OFF_PIXELS, None, 0.1),
    ("ddpg", "state"): _mk("MlpPolicy", 1, _OFF_VECTOR, _MLP_WIDE, 0.1),
    ("ddpg", "repr"): _mk("MlpPolicy", 1, _OFF_VECTOR, _MLP_WIDE, 0.1),
    ("ddpg", "pixels"): _mk("CnnPolicy", 1, _OFF_PIXELS, None, 0.1),
    ("dqn", "state"): _mk("MlpPolicy", 1, _DQN_VECTOR, _MLP_SMALL),
    ("dqn", "repr"): _mk("MlpPolicy", 1, _DQN_VECTOR, _MLP_WIDE),
    ("dqn", "pixels"): _mk("CnnPolicy", 1, _DQN_PIXELS),
}


def defaults_for(algo: str, obs: str) -> AgentDefaults:
    """The defaults of ``algo`` for observation mode ``obs`` (a fresh copy)."""
    check_choice("algo", algo, ALGOS)
    check_choice("obs mode", obs, AGENT_OBS_MODES)
    return copy.deepcopy(DEFAULTS[(algo, obs)])


@dataclass
class TrainConfig:
    """One agent training run (``wm agent train``); saved resolved as ``config.json``."""

    env_id: str = "wm/JacoReach-v0"
    """Gymnasium id of the environment (``module:id`` also works for envs outside the toolkit)."""
    obs: str = "state"
    """Agent observation mode: ``pixels``, ``repr`` or ``state``."""
    algo: str = "ppo"
    """SB3 algorithm: ``ppo``, ``a2c``, ``sac``, ``td3``, ``ddpg``, ``dqn`` (discrete actions only)."""
    steps: int = 50_000
    """Environment steps to train for (summed over the parallel envs)."""
    seed: int = 0
    """Seed of the agent and the training envs (env i: seed + i); evaluation uses ``eval_seed``."""
    out: str = "wm_out/agent"
    """Output directory: config, metadata, evaluations, TensorBoard logs, checkpoints, done.json."""
    camera: "str | None" = None
    """Camera mode passed to the env (``fixed``, ``moving``, ``random``); ``None``: the env's default."""
    size: "int | None" = None
    """Image size for pixels/repr; ``None``: the encoder's input size (repr) or the env default."""
    encoder: "str | None" = None
    """Checkpoint directory of the frozen encoder (required for ``obs='repr'``)."""
    append_viewpoint: bool = False
    """repr: append the 7-d camera viewpoint to the features."""
    context_views: int = 1
    """repr: aggregate the representations of the last K views of an episode."""
    aggregate: str = "sum"
    """repr: how K views are aggregated (``sum`` as GQN, or ``mean``)."""
    n_envs: "int | None" = None
    """Parallel training envs; ``None``: the (algo, obs) default."""
    vec_env: str = "dummy"
    """``dummy`` (one process) or ``subproc`` (one process per env)."""
    eval_freq: int = 5_000
    """Evaluate every this many env steps (rounded to a multiple of ``n_envs``)."""
    eval_episodes: int = 5
    """Episodes per evaluation (deterministic policy, separate env instance)."""
    eval_seed: int = 10_000
    """Seed of the evaluation env, reset before every evaluation: all evaluations of all runs play the same episodes."""
    checkpoint_freq: int = 50_000
    """Save an SB3 checkpoint (``checkpoints/``) every this many env steps (0: only the final model)."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Overrides of the SB3 constructor arguments (merged over the defaults)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``gymnasium.make`` (e.g. ``domain``)."""
    device: str = "auto"
    """Torch device of the agent and the encoder (``auto``: CUDA when available)."""
    threads: "int | None" = None
    """Torch CPU threads (``None``: torch's default); parallel comparisons set 1."""
    memory_fraction: float = 0.8
    """Replay buffers may use at most this fraction of the available RAM."""
    overwrite: bool = False
    """Retrain even when the output directory holds a finished run (``done.json``)."""
    progress: bool = True
    """Show a progress bar."""

    def validate(self) -> "TrainConfig":
        """Check choices and ranges; raise ``ValueError`` naming the bad field."""
        check_choice("obs mode", self.obs, AGENT_OBS_MODES)
        check_choice("algo", self.algo, ALGOS)
        check_choice("vec_env", self.vec_env, VEC_ENVS)
        check_choice("aggregate", self.aggregate, AGGREGATES)
        if self.obs == "repr" and not self.encoder:
            raise ValueError("obs='repr' needs an encoder checkpoint (--encoder DIR)")
        if self.obs != "repr" and self.encoder:
            raise ValueError(f"an encoder is only used with obs='repr', not obs={self.obs!r}")
        for name in ("steps", "eval_freq", "eval_episodes", "context_views"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_envs is not None and self.n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {self.n_envs}")
        if self.checkpoint_freq < 0:
            raise ValueError(f"checkpoint_freq must be >= 0, got {self.checkpoint_freq}")
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be in (0, 1], got {self.memory_fraction}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the fields."""
        return asdict(self)


@dataclass
class CompareConfig:
    """A grid of independent runs (obs modes x seeds) and its report (``wm agent compare``)."""

    env_id: str = "wm/JacoReach-v0"
    """Gymnasium id of the environment."""
    camera: "str | None" = None
    """Camera mode of the env (``None``: the env's default)."""
    obs_modes: tuple[str, ...] = AGENT_OBS_MODES
    """Observation modes to compare."""
    seeds: int = 5
    """Number of seeds per mode (seeds ``seed0 .. seed0 + seeds - 1``)."""
    seed0: int = 0
    """First seed."""
    steps: int = 50_000
    """Env steps per run."""
    algo: str = "ppo"
    """SB3 algorithm for every run."""
    encoder: "str | None" = None
    """Frozen encoder checkpoint for the ``repr`` runs."""
    out: str = "wm_out/compare"
    """Output directory (``runs/<obs>_s<seed>/`` per run, report files at the top)."""
    size: "int | None" = None
    """Image size for pixels/repr (``None``: the encoder's input size, else the env default)."""
    eval_freq: int = 5_000
    """Env steps between evaluations (the x grid of the curves)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    n_envs: "int | None" = None
    """Training envs per run (``None``: per-mode default)."""
    jobs: "int | None" = None
    """Runs in parallel (``None``: one per available core)."""
    threads_per_run: int = 1
    """Torch threads per run."""
    train_args: tuple[str, ...] = ()
    """Extra ``wm agent train`` arguments passed to every run (e.g. ``--hp n_steps=128``)."""
    threshold: float = 0.9
    """Headline: env steps to reach this fraction of the state agent's final return."""
    bootstrap_reps: int = 2_000
    """Stratified bootstrap replications for the confidence intervals."""

    def validate(self) -> "CompareConfig":
        """Check choices and ranges; raise ``ValueError`` naming the bad field."""
        if not self.obs_modes:
            raise ValueError("obs_modes must name at least one of " + ", ".join(AGENT_OBS_MODES))
        for m in self.obs_modes:
            check_choice("obs mode", m, AGENT_OBS_MODES)
        if len(set(self.obs_modes)) != len(self.obs_modes):
            raise ValueError(f"obs_modes has duplicates: {self.obs_modes}")
        check_choice("algo", self.algo, ALGOS)
        if "repr" in self.obs_modes and not self.encoder:
            raise ValueError("comparing obs mode 'repr' needs an encoder checkpoint (--encoder DIR)")
        for name in ("seeds", "steps", "eval_freq", "eval_episodes", "threads_per_run", "bootstrap_reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        return self
