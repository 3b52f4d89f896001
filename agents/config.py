"""Configuration of agent runs: per-(algorithm, observation mode) defaults and the run config.

Observation modes of an agent:

* ``pixels``: the env's uint8 frames, channel-first (``VecTransposeImage``), ``CnnPolicy``.
* ``pixels+viewpoint``: the frames and the 7-d camera viewpoint (``x, y, z, cos yaw, sin yaw,
  cos pitch, sin pitch``), ``MultiInputPolicy`` (the same CNN as ``pixels``, viewpoint concatenated).
* ``repr``: features of a frozen encoder (:mod:`agents.wrappers`), ``MlpPolicy``.
* ``state``: the env's low-dimensional state vector, ``MlpPolicy`` (the upper reference).

The defaults are chosen to run on a 2-core CPU (small networks, few epochs over pixel batches)
and are documented in docs/agents.md. Any SB3 constructor argument can be overridden per run
(``TrainConfig.hyperparams`` / ``wm agent train --hp key=value``).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from envs.spaces import check_choice

AGENT_OBS_MODES: tuple[str, ...] = ("pixels", "repr", "state", "pixels+viewpoint")
#: Agent obs modes whose policy sees images (frame stacking applies; no observation normalisation).
PIXEL_MODES: tuple[str, ...] = ("pixels", "pixels+viewpoint")
#: Agent obs modes whose observations are vectors (VecNormalize may normalise them).
VECTOR_MODES: tuple[str, ...] = ("repr", "state")
ALGOS: tuple[str, ...] = ("ppo", "a2c", "sac", "td3", "ddpg", "dqn")
ON_POLICY: tuple[str, ...] = ("ppo", "a2c")
OFF_POLICY: tuple[str, ...] = ("sac", "td3", "ddpg", "dqn")
VEC_ENVS: tuple[str, ...] = ("auto", "dummy", "subproc")
#: Agent obs modes that render frames; ``vec_env="auto"`` may run their envs in subprocesses.
AUTO_SUBPROC_MODES: tuple[str, ...] = ("pixels", "pixels+viewpoint", "repr")
#: ``vec_env="auto"`` picks ``SubprocVecEnv`` for these modes when ``n_envs > 1`` and the run has
#: at least this many CPUs of its own (:func:`agents.env_stack.available_cpus`; a comparison grid
#: gives each of its parallel runs ``cores // jobs``). Measured on the 2-core dev machine at 64 px
#: with 8 envs, one run alone, medians of 3: subproc / dummy 1.12 (repr), 1.14 (pixels), 1.10
#: (pixels+viewpoint), 0.65 (state) (docs/benchmarks.md, "PPO env steps/s per observation mode").
AUTO_SUBPROC_MIN_CPUS = 2
#: Environment variable through which a comparison grid tells a run how many CPUs are its share.
CPUS_PER_RUN_ENV = "WM_CPUS_PER_RUN"
AGGREGATES: tuple[str, ...] = ("sum", "mean")
#: Env observation mode requested for each agent observation mode.
ENV_OBS: dict[str, str] = {
    "pixels": "pixels",
    "repr": "pixels+viewpoint",
    "state": "state",
    "pixels+viewpoint": "pixels+viewpoint",
}
#: What an arm name may contain (it names run directories and report groups).
ARM_PATTERN = re.compile(r"[a-z0-9+_-]+")


def check_arm(arm: str) -> str:
    """Return ``arm`` if it matches :data:`ARM_PATTERN`, else raise a ``ValueError`` saying what is allowed."""
    if not isinstance(arm, str) or not ARM_PATTERN.fullmatch(arm):
        raise ValueError(
            f"arm name {arm!r} is not allowed: use lower-case letters, digits, '+', '_' and '-' only (e.g. 'repr-niso')"
        )
    return arm


@dataclass(frozen=True)
class AgentDefaults:
    """Defaults for one (algorithm, observation mode) pair."""

    policy: str
    """SB3 policy name: ``CnnPolicy`` (pixels), ``MultiInputPolicy`` (pixels+viewpoint), ``MlpPolicy`` (repr, state)."""
    n_envs: int
    """Number of parallel training environments."""
    hyperparams: dict[str, Any]
    """Keyword arguments of the SB3 algorithm's constructor (``policy_kwargs`` included)."""
    action_noise_std: float = 0.0
    """Std of Gaussian action noise (fraction of the action range) for TD3/DDPG exploration."""


_MLP_SMALL = {"net_arch": [64, 64]}
_MLP_MEDIUM = {"net_arch": [128, 128]}
_MLP_WIDE = {"net_arch": [256, 256]}

# One setting per algorithm, identical for every obs mode (only the torso in front of the
# policy/value MLP differs: CNN, CNN + viewpoint, or none), so that env steps to a return level
# compare observations, not hyperparameters.
# PPO: 8 envs x 256 steps = 2048 per update; the toolkit's Jaco reach learns from state with these
# (docs/agents.md, learnability).
_PPO = dict(
    n_steps=256,
    batch_size=256,
    n_epochs=10,
    learning_rate=3e-4,
    gamma=0.99,
    gae_lambda=0.95,
    clip_range=0.2,
    ent_coef=0.0,
)
_A2C = dict(n_steps=8, learning_rate=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0)
# Off-policy: SB3's timeout handling (handle_timeout_termination=True, its default) in every mode,
# so a time-limit truncation is never learned as a terminal state. That needs two copies of each
# observation (optimize_memory_usage=False): 100k transitions of 64 px frames are ~2.5 GB, which
# the replay-memory guard of agents.train checks before allocating.
_OFF = dict(
    buffer_size=100_000,
    learning_starts=1_000,
    batch_size=256,
    learning_rate=3e-4,
    gamma=0.99,
    train_freq=1,
    gradient_steps=1,
)
_DQN = dict(
    buffer_size=50_000,
    learning_starts=1_000,
    batch_size=64,
    learning_rate=1e-4,
    train_freq=4,
    target_update_interval=1_000,
    exploration_fraction=0.2,
)
#: SB3 policy class of each agent obs mode.
POLICIES: dict[str, str] = {
    "pixels": "CnnPolicy",
    "pixels+viewpoint": "MultiInputPolicy",
    "repr": "MlpPolicy",
    "state": "MlpPolicy",
}
#: algorithm -> (n_envs, constructor arguments, policy_kwargs, action noise std); the same for every obs mode.
_ALGO_SETTINGS: dict[str, tuple[int, dict, dict, float]] = {
    "ppo": (8, _PPO, _MLP_MEDIUM, 0.0),
    "a2c": (4, _A2C, _MLP_SMALL, 0.0),
    "sac": (1, _OFF, _MLP_WIDE, 0.0),
    "td3": (1, _OFF, _MLP_WIDE, 0.1),
    "ddpg": (1, _OFF, _MLP_WIDE, 0.1),
    "dqn": (1, _DQN, _MLP_SMALL, 0.0),
}


def _mk(policy: str, n_envs: int, hp: dict, policy_kwargs: dict | None = None, noise: float = 0.0) -> AgentDefaults:
    hp = copy.deepcopy(hp)
    if policy_kwargs:
        hp["policy_kwargs"] = copy.deepcopy(policy_kwargs)
    return AgentDefaults(policy=policy, n_envs=n_envs, hyperparams=hp, action_noise_std=noise)


#: (algorithm, obs mode) -> defaults. Pixel CNNs are chosen by image size at run time
#: (:func:`agents.extractors.pixel_policy_kwargs`, :func:`agents.extractors.dict_policy_kwargs`).
DEFAULTS: dict[tuple[str, str], AgentDefaults] = {
    (algo, obs): _mk(POLICIES[obs], n_envs, hp, pk, noise)
    for algo, (n_envs, hp, pk, noise) in _ALGO_SETTINGS.items()
    for obs in AGENT_OBS_MODES
}


def defaults_for(algo: str, obs: str) -> AgentDefaults:
    """The defaults of ``algo`` for observation mode ``obs`` (a fresh copy)."""
    check_choice("algo", algo, ALGOS)
    check_choice("obs mode", obs, AGENT_OBS_MODES)
    return copy.deepcopy(DEFAULTS[(algo, obs)])


@dataclass
class TrainConfig:
    """One agent training run (``wm agent train``); saved resolved as ``config.json``."""

    env_id: str = "wm/JacoReach-v1"
    """Gymnasium id of the environment (``module:id`` also works for envs outside the toolkit)."""
    obs: str = "state"
    """Agent observation mode: ``pixels``, ``pixels+viewpoint``, ``repr`` or ``state``."""
    arm: str | None = None
    """Name of the comparison group this run belongs to (``[a-z0-9+_-]+``, e.g. ``repr-niso``); ``None``: the obs
    mode."""
    algo: str = "ppo"
    """SB3 algorithm: ``ppo``, ``a2c``, ``sac``, ``td3``, ``ddpg``, ``dqn`` (discrete actions only)."""
    steps: int = 50_000
    """Environment steps to train for (summed over the parallel envs)."""
    seed: int = 0
    """Seed of the agent; training env i is seeded ``seed * 1000 + i`` (evaluation uses ``eval_seed``)."""
    out: str = "wm_out/agent"
    """Output directory: config, metadata, evaluations, TensorBoard logs, checkpoints, done.json."""
    camera: str | None = None
    """Camera mode passed to the env (``fixed``, ``moving``, ``random``); ``None``: the env's default."""
    size: int | None = None
    """Image size for pixels, pixels+viewpoint and repr; ``None``: the encoder's input size (repr) or the env
    default."""
    encoder: str | None = None
    """Checkpoint directory of the frozen encoder (required for ``obs='repr'``)."""
    append_viewpoint: bool = False
    """repr: append the 7-d camera viewpoint to the features."""
    context_views: int = 1
    """repr: aggregate the representations of the last K views of an episode."""
    aggregate: str = "sum"
    """repr: how K views are aggregated (``sum`` as GQN, or ``mean``)."""
    frame_stack: int = 1
    """pixels, pixels+viewpoint: stack the last K observations (``VecFrameStack``; 1: no stacking)."""
    normalize: bool = False
    """repr, state: normalise observations with running mean/variance (``VecNormalize``, clipped at 10)."""
    normalize_reward: bool = False
    """Scale rewards by a running estimate of the discounted return's std (``VecNormalize``; any obs mode)."""
    n_envs: int | None = None
    """Parallel training envs; ``None``: the (algo, obs) default."""
    vec_env: str = "auto"
    """``dummy`` (one process), ``subproc`` (one process per env) or ``auto`` (subproc where measured faster)."""
    eval_freq: int = 5_000
    """Evaluate every this many env steps (rounded to a multiple of ``n_envs``)."""
    eval_episodes: int = 30
    """Episodes per evaluation: episode k is reset with seed ``eval_seed + k`` (deterministic policy, separate env)."""
    eval_seed: int = 1_000_000
    """First seed of the fixed evaluation episodes (all evaluations of all runs play the same episodes)."""
    checkpoint_freq: int = 25_000
    """Save a resumable checkpoint (``checkpoints/``) every this many env steps (0: only the final model)."""
    resume: bool = True
    """Continue an unfinished run from its latest checkpoint (``False``: clear it and start again)."""
    save_replay_buffer: bool = True
    """Off-policy: save the replay buffer with the latest checkpoint, so a resumed run keeps its experience."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Overrides of the SB3 constructor arguments (merged over the defaults)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``gymnasium.make`` (e.g. ``domain``)."""
    device: str = "auto"
    """Torch device of the agent and the encoder (``auto``: CUDA when available)."""
    threads: int | None = None
    """Torch CPU threads (``None``: torch's default); parallel comparisons set 1."""
    memory_fraction: float = 0.8
    """Replay buffers may use at most this fraction of the available RAM."""
    overwrite: bool = False
    """Retrain from scratch even when the output directory holds a finished run (``done.json``)."""
    progress: bool = True
    """Show a progress bar."""

    @property
    def arm_name(self) -> str:
        """The arm this run belongs to (``arm``, or the obs mode when unset)."""
        return self.arm or self.obs

    def validate(self) -> TrainConfig:
        """Check choices and ranges; raise ``ValueError`` naming the bad field."""
        check_choice("obs mode", self.obs, AGENT_OBS_MODES)
        check_choice("algo", self.algo, ALGOS)
        check_choice("vec_env", self.vec_env, VEC_ENVS)
        check_choice("aggregate", self.aggregate, AGGREGATES)
        if self.arm is not None:
            check_arm(self.arm)
        if self.obs == "repr" and not self.encoder:
            raise ValueError("obs='repr' needs an encoder checkpoint (--encoder DIR)")
        if self.obs != "repr" and self.encoder:
            raise ValueError(f"an encoder is only used with obs='repr', not obs={self.obs!r}")
        for name in ("steps", "eval_freq", "eval_episodes", "context_views", "frame_stack"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.frame_stack > 1 and self.obs not in PIXEL_MODES:
            raise ValueError(
                f"frame_stack={self.frame_stack} applies to obs modes {', '.join(PIXEL_MODES)}, not obs={self.obs!r}"
                + (" (repr aggregates past views with context_views)" if self.obs == "repr" else "")
            )
        if self.normalize and self.obs not in VECTOR_MODES:
            raise ValueError(
                f"normalize (observation normalisation) applies to the vector obs modes {', '.join(VECTOR_MODES)}, "
                f"not obs={self.obs!r} (images are scaled to [0, 1] by the policy)"
            )
        if self.eval_seed < 0:
            raise ValueError(f"eval_seed must be >= 0, got {self.eval_seed}")
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


#: Obs modes compared when neither ``--obs`` nor ``--arm`` is given (arms named after the modes).
DEFAULT_COMPARE_OBS: tuple[str, ...] = ("pixels", "repr", "state")
#: ``wm agent train`` options the grid sets itself for every run; arms and ``train_args`` may not
#: set them (the run layout, the seeds and the evaluation episodes must be the grid's).
GRID_OWNED_TRAIN_FLAGS: tuple[str, ...] = (
    "--env",
    "--obs",
    "--arm",
    "--encoder",
    "--out",
    "--seed",
    "--steps",
    "--eval-freq",
    "--eval-episodes",
    "--eval-seed",
    "--overwrite",
    "--no-progress",
    "--checkpoint-freq",
)


def check_train_args(args: tuple[str, ...] | list[str], what: str) -> None:
    """Refuse extra ``wm agent train`` arguments that would override one of :data:`GRID_OWNED_TRAIN_FLAGS`."""
    for a in args:
        flag = a.split("=", 1)[0]
        if flag in GRID_OWNED_TRAIN_FLAGS:
            raise ValueError(
                f"{what} may not set {flag} (the grid sets it for every run); flags set by the grid: "
                + ", ".join(GRID_OWNED_TRAIN_FLAGS)
            )


@dataclass(frozen=True)
class ArmSpec:
    """One arm of a comparison: a named agent setup, trained once per seed of the grid."""

    name: str
    """Unique name of the arm (run directories are ``<name>_s<seed>``), e.g. ``repr-niso``."""
    obs: str
    """Agent observation mode (one of ``AGENT_OBS_MODES``)."""
    encoder: str | None = None
    """Frozen encoder checkpoint (or run) directory; required for, and only used by, ``obs='repr'``."""
    train_args: tuple[str, ...] = ()
    """Extra ``wm agent train`` arguments of this arm only, after the grid's (e.g. ``("--normalize",)``)."""

    @classmethod
    def parse(cls, text: str, train_args: tuple[str, ...] = ()) -> ArmSpec:
        """Parse ``NAME=OBS[@ENCODER_DIR]`` (``--arm`` on the command line); validates the result."""
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise ValueError(f"--arm expects NAME=OBS[@ENCODER_DIR], got {text!r} (e.g. repr-niso=repr@runs/niso)")
        obs, _, encoder = rest.partition("@")
        return cls(name.strip(), obs.strip(), encoder.strip() or None, tuple(train_args)).validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ArmSpec:
        """Inverse of ``dataclasses.asdict`` (JSON lists back to tuples)."""
        return cls(values["name"], values["obs"], values.get("encoder"), tuple(values.get("train_args") or ()))

    def validate(self) -> ArmSpec:
        """Check the name, the obs mode and the encoder; raise ``ValueError`` naming the arm."""
        check_arm(self.name)
        if self.obs not in AGENT_OBS_MODES:
            raise ValueError(
                f"arm {self.name!r}: unknown obs mode {self.obs!r}; valid values: "
                f"{', '.join(map(repr, AGENT_OBS_MODES))}"
            )
        if self.obs == "repr" and not self.encoder:
            raise ValueError(f"arm {self.name!r} (obs repr) needs an encoder checkpoint: --arm {self.name}=repr@DIR")
        if self.obs != "repr" and self.encoder:
            raise ValueError(f"arm {self.name!r}: an encoder is only used with obs 'repr', not {self.obs!r}")
        check_train_args(self.train_args, f"the train args of arm {self.name!r}")
        return self

    def describe(self) -> str:
        """One line for reports: obs mode, encoder and extra arguments."""
        parts = [f"obs {self.obs}"]
        if self.encoder:
            parts.append(f"encoder {self.encoder}")
        if self.train_args:
            parts.append("extra train args: " + " ".join(self.train_args))
        return ", ".join(parts)


def arms_for_obs_modes(modes: tuple[str, ...] | list[str], encoder: str | None = None) -> tuple[ArmSpec, ...]:
    """Arms named after obs modes (``--obs pixels repr state``); ``repr`` uses ``encoder``."""
    return tuple(ArmSpec(m, m, encoder if m == "repr" else None) for m in modes)


@dataclass
class CompareConfig:
    """A grid of independent runs (arms x seeds) and its report (``wm agent compare``)."""

    env_id: str = "wm/JacoReach-v1"
    """Gymnasium id of the environment."""
    camera: str | None = None
    """Camera mode of the env (``None``: the env's default)."""
    arms: tuple[ArmSpec, ...] = ()
    """The arms compared (unique names); see :func:`arms_for_obs_modes` and :meth:`ArmSpec.parse`."""
    seeds: int = 5
    """Number of seeds per arm (seeds ``seed0 .. seed0 + seeds - 1``)."""
    seed0: int = 0
    """First seed."""
    steps: int = 50_000
    """Env steps per run."""
    algo: str = "ppo"
    """SB3 algorithm for every run."""
    out: str = "wm_out/compare"
    """Output directory (``runs/<arm>_s<seed>/`` per run, ``reference.json`` and the report files at the top)."""
    size: int | None = None
    """Image size for pixel/repr arms (``None``: the encoder's input size, else the env default)."""
    eval_freq: int = 5_000
    """Env steps between evaluations (the x grid of the curves)."""
    eval_episodes: int = 30
    """Episodes per evaluation: seeds ``eval_seed .. eval_seed + eval_episodes - 1``, the same for every run and the
    reference."""
    eval_seed: int = 1_000_000
    """First evaluation seed (``agents.reference.evaluation_seeds``); far from the training seeds ``seed*1000 + i``."""
    n_envs: int | None = None
    """Training envs per run (``None``: the (algo, obs) default)."""
    checkpoint_freq: int | None = None
    """Env steps between a run's resumable checkpoints (``None``: ``wm agent train``'s default)."""
    jobs: int | None = None
    """Runs in parallel (``None``: one per available core / ``threads_per_run``)."""
    threads_per_run: int = 1
    """Torch threads per run."""
    train_args: tuple[str, ...] = ()
    """Extra ``wm agent train`` arguments of every run (e.g. ``--hp n_steps=128``); an arm's own come after."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``gymnasium.make`` arguments of every run and of the reference measurement (e.g. ``episode_length``)."""
    threshold: float = 0.8
    """Headline: env steps until the IQM curve stays at or above this normalised score (1 = expert)."""
    bootstrap_reps: int = 2_000
    """Stratified bootstrap replications for the confidence intervals."""

    @property
    def arm_names(self) -> list[str]:
        """Names of the arms, in order."""
        return [a.name for a in self.arms]

    def arm(self, name: str) -> ArmSpec:
        """The arm called ``name``."""
        for a in self.arms:
            if a.name == name:
                return a
        raise ValueError(f"unknown arm {name!r}; valid values: {', '.join(map(repr, self.arm_names))}")

    def validate(self) -> CompareConfig:
        """Check choices and ranges; raise ``ValueError`` naming the bad field."""
        if not self.arms:
            raise ValueError("a comparison needs at least one arm (--obs MODE ... or --arm NAME=OBS[@ENCODER_DIR])")
        for a in self.arms:
            if not isinstance(a, ArmSpec):
                raise ValueError(f"arms must be ArmSpec objects, got {a!r}")
            a.validate()
        dupes = sorted({n for n in self.arm_names if self.arm_names.count(n) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; repeated: {', '.join(dupes)}")
        check_choice("algo", self.algo, ALGOS)
        check_train_args(self.train_args, "the grid's train args")
        for name in ("seeds", "steps", "eval_freq", "eval_episodes", "threads_per_run", "bootstrap_reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if self.checkpoint_freq is not None and self.checkpoint_freq < 0:
            raise ValueError(f"checkpoint_freq must be >= 0, got {self.checkpoint_freq}")
        if self.eval_seed < 0:
            raise ValueError(f"eval_seed must be >= 0, got {self.eval_seed}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the fields (arms as dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CompareConfig:
        """A config from :meth:`to_dict` output; also reads the older layout (``obs_modes`` + ``encoder``,
        env kwargs inside ``train_args``). Unknown keys are ignored."""
        v = dict(values)
        names = set(cls.__dataclass_fields__)
        if "arms" not in v and "obs_modes" in v:
            v["arms"] = arms_for_obs_modes(v["obs_modes"], v.get("encoder"))
        train_args, env_kwargs = list(v.get("train_args") or ()), dict(v.get("env_kwargs") or {})
        kept: list[str] = []
        while train_args:  # older configs carried env kwargs as "--env-kwarg k=v" pairs
            a = train_args.pop(0)
            if a == "--env-kwarg" and train_args:
                key, _, raw = train_args.pop(0).partition("=")
                env_kwargs[key.strip()] = _json_or_str(raw)
            else:
                kept.append(a)
        v["train_args"], v["env_kwargs"] = tuple(kept), env_kwargs
        v["arms"] = tuple(a if isinstance(a, ArmSpec) else ArmSpec.from_dict(a) for a in v.get("arms", ()))
        return cls(**{k: val for k, val in v.items() if k in names})


def _json_or_str(raw: str) -> Any:
    """A ``KEY=VALUE`` value as ``wm agent train`` reads it: JSON when it parses, else the string."""
    import json

    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
