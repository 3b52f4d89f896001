"""``wm demo``: the whole study in one command (the README's first command).

Stages, each a ``wm`` subprocess whose own progress bars stay visible (low coupling: the demo
uses the CLIs exactly as a person would):

1. ``data``: ``wm data collect --source jaco``: scenes of the ``wm/JacoReach-v1`` world, each seen
   from several cameras (``--camera orbit``: independent poses on the env's orbit shell, or
   ``trajectory``: poses along one moving-camera path), with the floor marker under the target
   (``-o target_marker=true``) when the preset asks for it;
2. ``gqn``: ``wm train gqn``: a GQN trained on them (``--representation lifted --features
   spatial``: the geometry-aware one, whose representation is a world-frame feature volume); its
   representation network is the frozen encoder;
3. ``untrained``: ``wm train untrained --like gqn``: the same network with fresh weights, the
   control that separates learned features from architecture;
4. ``probe``: ``wm eval probe``: how much of the world state (target - hand, hand, target,
   joints) a linear/MLP probe reads from the GQN's features aggregated over the same
   ``context_views`` views the agents get, against the untrained control and pixel PCA
   (``probe/probe.json``, ``probe/probe.png``);
5. ``compare``: ``wm agent compare``: PPO on pixels (and pixels + viewpoint when the preset asks),
   on the frozen GQN representation and on the untrained encoder's features (both aggregating the
   episode's last ``context_views`` views) and on the state, on ``wm/JacoReach-v1`` with a moving
   camera; scores normalised to the scripted expert (1) and the zero-action policy (0), rliable
   statistics and the report, whose one-paragraph answer the demo prints at the end;
6. ``compare-fixed`` (presets with ``fixed_camera``): the pixels and representation arms again
   with a fixed camera (``compare-fixed/``), the setting where pixels need no viewpoint.

At the end the demo prints the probe's R² (target - hand, hand, target) of every representation
and the comparisons' answers.

Rerunning the same command resumes: finished stages are skipped (``demo.json``; a stage that a
``demo.json`` of an older demo lacks, such as ``probe``, simply runs), the dataset collection and
the agent grids resume themselves (runs continue from their last checkpoint), and an interrupted
GQN run continues from its newest checkpoint. Presets (:data:`PRESETS`) run the same recipe at
different sizes: ``--preset small`` is the smoke-test size for a 2-core CPU (~20-40 minutes;
measured times in docs/benchmarks.md), far too small for a conclusion; ``--preset study`` is the
smallest one meant to answer the question, sized for <= 2 h on a 2-core CPU, resumable: rerun to
continue; ``--preset full`` is the GPU-scale version of the same study.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agents.artifacts import read_json, write_json_atomic

STATE_FILE = "demo.json"
ENV_ID = "wm/JacoReach-v1"
#: Every stage, in running order; a preset runs those of :func:`preset_stages`.
STAGES: tuple[str, ...] = ("data", "gqn", "untrained", "probe", "compare", "compare-fixed")
#: Stages that resume themselves and so run again on every rerun (to finish and rewrite the report).
SELF_RESUMING: tuple[str, ...] = ("compare", "compare-fixed")
#: Probe quantities printed at the end (best held-out R² of each representation).
PROBE_QUANTITIES: tuple[str, ...] = ("target-hand", "hand", "target")


@dataclass(frozen=True)
class DemoPreset:
    """Sizes and recipe of every stage of the demo."""

    scenes: int
    """Jaco scenes in the dataset."""
    views: int
    """Views per scene."""
    size: int
    """Image size of the dataset, the GQN, the probe and the agents' observations."""
    data_camera: str
    """Cameras of a scene (``wm data collect --camera``): ``"orbit"`` (independent random poses on the
    env's orbit shell, GQN's sampling) or ``"trajectory"`` (consecutive poses of one moving camera)."""
    target_marker: bool
    """Show the floor disc under the target (``target_marker=True``) in the dataset, the probe and
    the agents' envs, so one view tells the target's world position."""
    gqn_preset: str
    """``wm train gqn --preset``."""
    gqn_representation: str
    """``wm train gqn --representation`` (``"lifted"``: the geometry-aware world-frame feature volume)."""
    gqn_features: str
    """``wm train gqn --features``: the frozen encoder's features of a view (``"spatial"`` or ``"pooled"``)."""
    gqn_z_channels: int
    """``wm train gqn --z-channels``: channels of each latent (1: a small latent)."""
    gqn_kl_weight: float
    """``wm train gqn --kl-weight``: weight of the KL term (above 1 the generator must render from r, not from the
    posterior)."""
    gqn_max_context: int
    """``wm train gqn --max-context``: most context views per training scene."""
    gqn_lr: float
    """``wm train gqn --lr``: initial learning rate."""
    gqn_steps: int
    """GQN optimiser steps."""
    gqn_batch: int
    """GQN batch size (scenes per step)."""
    gqn_sigma: float
    """Fixed pixel std of the GQN likelihood (a small one makes the thin arm and the target matter)."""
    gqn_device: str
    """Device of GQN training."""
    context_views: int
    """Views the representation arms (``--context-views``) and the probe (``--views``) aggregate:
    the episode's last K frames."""
    aggregate: str
    """How the representation arms combine their K views (``--aggregate``: ``"mean"`` or ``"sum"``)."""
    probe_episodes: int
    """Random-action rollouts (distinct targets) of the state probe (``wm eval probe --episodes``)."""
    fixed_camera: bool
    """Also compare pixels and the representation with a fixed camera (the ``compare-fixed`` stage)."""
    pixels_viewpoint: bool
    """Add the pixels + viewpoint arm (frames and the 7-d camera viewpoint) to the moving-camera comparison."""
    agent_steps: int
    """Env steps per agent run."""
    seeds: int
    """Seeds per arm."""
    eval_freq: int
    """Env steps between evaluations."""
    eval_episodes: int
    """Evaluation episodes per point (the fixed evaluation seed set)."""
    reps: int
    """Bootstrap resamples of the report."""


#: The recipe every preset runs (only the sizes differ).
_RECIPE = dict(
    data_camera="orbit",
    target_marker=True,
    gqn_representation="lifted",
    gqn_features="spatial",
    gqn_z_channels=1,
    gqn_kl_weight=50.0,
    gqn_max_context=3,
    context_views=12,
    aggregate="mean",
)

PRESETS: dict[str, DemoPreset] = {
    # 2-core CPU, ~20-40 minutes from a fresh clone (docs/benchmarks.md): a 32 px study, 3 seeds per arm, 20k env steps
    # per run. Pixel PPO runs at ~135 env steps/s and repr at ~210 on one core here, so this is
    # far too small a budget for a conclusion about pixels vs representations (the state agent
    # needs ~50k steps to reach 0.8; the report says so); it runs the whole pipeline end to end.
    "small": DemoPreset(
        scenes=600,
        views=11,
        size=32,
        **_RECIPE,
        gqn_preset="small",
        gqn_lr=1e-3,
        gqn_steps=300,
        gqn_batch=16,
        gqn_sigma=0.1,
        gqn_device="cpu",
        probe_episodes=200,
        fixed_camera=False,
        pixels_viewpoint=False,
        agent_steps=20_000,
        seeds=3,
        eval_freq=10_000,
        eval_episodes=30,
        reps=2_000,
    ),
    # 2-core CPU, <= 2 h and resumable (rerun to continue): ~30 min for data, GQN (3000 steps at
    # ~0.25 s) and probe, then 7 arms x 5 seeds x 50k env steps (~0.19 core-s per env step of a
    # seed's arms: pixel PPO ~135 steps/s, repr ~200, state ~1000 on one core). 50k steps is the
    # state agent's time to 0.8, so slower arms are censored: the report gives lower bounds.
    "study": DemoPreset(
        scenes=4000,
        views=11,
        size=32,
        **_RECIPE,
        gqn_preset="small",
        gqn_lr=1e-3,
        gqn_steps=3000,
        gqn_batch=16,
        gqn_sigma=0.1,
        gqn_device="cpu",
        probe_episodes=800,
        fixed_camera=True,
        pixels_viewpoint=True,
        agent_steps=50_000,
        seeds=5,
        eval_freq=10_000,
        eval_episodes=30,
        reps=10_000,
    ),
    # GPU-scale: the paper's GQN architecture (its learning rate and sigma) on a large 64 px
    # dataset, 5 seeds x 500k env steps.
    "full": DemoPreset(
        scenes=50_000,
        views=11,
        size=64,
        **_RECIPE,
        gqn_preset="paper",
        gqn_lr=5e-4,
        gqn_steps=200_000,
        gqn_batch=36,
        gqn_sigma=0.7,
        gqn_device="auto",
        probe_episodes=800,
        fixed_camera=True,
        pixels_viewpoint=True,
        agent_steps=500_000,
        seeds=5,
        eval_freq=20_000,
        eval_episodes=30,
        reps=50_000,
    ),
}


def _wm(*args: str) -> list[str]:
    return [sys.executable, "-m", "agents.cli", *args]


def preset_stages(preset: DemoPreset) -> tuple[str, ...]:
    """The stages ``preset`` runs, in order (:data:`STAGES` without those it does not configure)."""
    return tuple(s for s in STAGES if s != "compare-fixed" or preset.fixed_camera)


def stage_commands(
    preset: DemoPreset, out: Path, jobs: int | None = None, device: str | None = None, threads: int | None = None
) -> dict[str, list[str]]:
    """The ``wm`` command of each stage of :func:`preset_stages` (the GQN one for a fresh run), in order.

    ``threads`` sets torch's CPU threads of the GQN training and the probe (None: torch's default)."""
    p = preset
    torch_threads = ["--threads", str(threads)] if threads is not None else []
    data, gqn, untrained = out / "data", out / "gqn", out / "untrained"
    marker = ["--env-kwarg", "target_marker=true"] if p.target_marker else []
    repr_args = f"--context-views {p.context_views} --aggregate {p.aggregate}"

    def compare(dest: Path, camera: str, arms: list[tuple[str, str]]) -> list[str]:
        cmd = ["agent", "compare", "--env", ENV_ID, "--camera", camera]
        for name, spec in arms:
            cmd += ["--arm", f"{name}={spec}"]
        for name, spec in arms:
            if spec.startswith("repr@"):
                cmd += ["--arm-args", f"{name}={repr_args}"]
        return _wm(
            *cmd,
            *marker,
            "--seeds",
            str(p.seeds),
            "--steps",
            str(p.agent_steps),
            "--size",
            str(p.size),
            "--out",
            str(dest),
            "--eval-freq",
            str(p.eval_freq),
            "--eval-episodes",
            str(p.eval_episodes),
            "--reps",
            str(p.reps),
            *(["--jobs", str(jobs)] if jobs else []),
        )

    moving_arms = [
        ("pixels", "pixels"),
        *([("pixels+viewpoint", "pixels+viewpoint")] if p.pixels_viewpoint else []),
        ("repr", f"repr@{gqn}"),
        ("repr-untrained", f"repr@{untrained}"),
        ("state", "state"),
    ]
    commands = {
        "data": _wm(
            "data",
            "collect",
            "--source",
            "jaco",
            "--scenes",
            str(p.scenes),
            "--views",
            str(p.views),
            "--size",
            str(p.size),
            "--camera",
            p.data_camera,
            *(["-o", "target_marker=true"] if p.target_marker else []),
            "--seed",
            "0",
            "--out",
            str(data),
        ),
        "gqn": _wm(
            "train",
            "gqn",
            "--preset",
            p.gqn_preset,
            "--data",
            str(data),
            "--out",
            str(gqn),
            "--representation",
            p.gqn_representation,
            "--features",
            p.gqn_features,
            "--lr",
            str(p.gqn_lr),
            "--image-size",
            str(p.size),
            "--steps",
            str(p.gqn_steps),
            "--batch-size",
            str(p.gqn_batch),
            "--sigma-start",
            str(p.gqn_sigma),
            "--sigma-end",
            str(p.gqn_sigma),
            "--z-channels",
            str(p.gqn_z_channels),
            "--kl-weight",
            str(p.gqn_kl_weight),
            "--max-context",
            str(p.gqn_max_context),
            "--device",
            device or p.gqn_device,
            "--ckpt-every",
            str(max(1, p.gqn_steps // 4)),
            "--seed",
            "0",
            *torch_threads,
        ),
        "untrained": _wm("train", "untrained", "--like", str(gqn), "--out", str(untrained), "--seed", "0"),
        "probe": _wm(
            "eval",
            "probe",
            "--encoder",
            f"gqn={gqn}",
            "--untrained",
            f"untrained={untrained}",
            "--env",
            ENV_ID,
            "--camera",
            "moving",
            "--views",
            str(p.context_views),
            "--steps",
            str(max(20, p.context_views + 8)),
            "--episodes",
            str(p.probe_episodes),
            "--out",
            str(out / "probe"),
            *marker,
            *torch_threads,
        ),
        "compare": compare(out / "compare", "moving", moving_arms),
        "compare-fixed": compare(out / "compare-fixed", "fixed", [("pixels", "pixels"), ("repr", f"repr@{gqn}")]),
    }
    return {name: commands[name] for name in preset_stages(p)}


def _gqn_has_checkpoint(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return ckpts.is_dir() and any(p.name.startswith("step_") for p in ckpts.iterdir())


def probe_lines(probe_json: Path) -> list[str]:
    """The probe's best held-out R² of :data:`PROBE_QUANTITIES` per representation, as table lines."""
    result = read_json(probe_json)
    reps = result.get("representations", {})
    if not reps:
        return []
    w = max(len("representation"), *(len(r) for r in reps))
    lines = [f"{'representation':<{w}} " + " ".join(f"{q:>12}" for q in PROBE_QUANTITIES)]
    for rep, res in reps.items():
        best = res.get("best", {})
        cells = [
            f"{best[q]:>12.3f}" if isinstance(best.get(q), (int, float)) else f"{'-':>12}" for q in PROBE_QUANTITIES
        ]
        lines.append(f"{rep:<{w}} " + " ".join(cells))
    return lines


def _changed_settings(stored: dict, current: dict) -> list[str]:
    return [k for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]


def run_demo(
    preset: str = "small",
    out: str = "wm_out/demo",
    jobs: int | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> int:
    """Run (or resume) the demo; returns the exit code of the first failing stage, else 0."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid values: {', '.join(map(repr, PRESETS))}")
    p = PRESETS[preset]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE_FILE
    state = read_json(state_path) if state_path.is_file() else {"preset": preset, "settings": asdict(p), "stages": {}}
    if state.get("preset") != preset:
        raise ValueError(
            f"{root} holds a demo with --preset {state.get('preset')}; use another --out for --preset {preset}"
        )
    state.setdefault("stages", {})
    changed = _changed_settings(state.get("settings") or {}, asdict(p))
    if changed and any(v.get("done") for v in state["stages"].values()):
        print(
            f"wm demo: note: the --preset {preset} settings changed since this demo's finished stages ran "
            f"({', '.join(changed)}); finished stages are kept, the others run with the current settings "
            f"(use another --out for a fresh demo)",
            file=sys.stderr,
            flush=True,
        )
    stages = preset_stages(p)
    if threads is not None and threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's default), got {threads}")
    commands = stage_commands(p, root, jobs, device, threads)
    if "gqn" not in state["stages"] and _gqn_has_checkpoint(root / "gqn"):
        resume = ["--threads", str(threads)] if threads is not None else []
        commands["gqn"] = _wm("train", "gqn", "--resume", "--out", str(root / "gqn"), *resume)  # continue it
    marker = ", target marker" if p.target_marker else ""
    pv = "pixels+viewpoint, " if p.pixels_viewpoint else ""
    titles = {
        "data": f"collecting {p.scenes} JacoReach-v1 scenes x {p.views} {p.data_camera}-camera views at "
        f"{p.size}px{marker}",
        "gqn": f"training a GQN ({p.gqn_preset} preset, {p.gqn_representation} representation, {p.gqn_features} "
        f"features, {p.gqn_steps} steps, batch {p.gqn_batch}, lr {p.gqn_lr}, sigma {p.gqn_sigma})",
        "untrained": "the untrained control: the GQN's architecture with fresh weights",
        "probe": f"state probes of the GQN, untrained and pixel features over {p.context_views} views "
        f"({p.probe_episodes} moving-camera rollouts)",
        "compare": f"PPO on pixels, {pv}GQN features, untrained features ({p.context_views} views, {p.aggregate}) and "
        f"state, moving camera: {p.seeds} seeds x {p.agent_steps} env steps",
        "compare-fixed": f"PPO on pixels and GQN features, fixed camera: {p.seeds} seeds x {p.agent_steps} env steps",
    }
    t_start = time.monotonic()
    print(f"wm demo --preset {preset}: output in {root.resolve()}", flush=True)
    for i, name in enumerate(stages, 1):
        header = f"[{i}/{len(stages)}] {titles[name]}"
        if state["stages"].get(name, {}).get("done") and name not in SELF_RESUMING:
            print(f"{header}: already done, skipped", flush=True)
            continue
        print(f"\n{header}\n$ {shlex.join(commands[name])}", flush=True)
        t0 = time.monotonic()
        code = subprocess.call(commands[name])
        if code != 0:
            print(
                f"wm demo: stage '{name}' failed with exit code {code}; rerun the same command to resume",
                file=sys.stderr,
            )
            return code
        state["stages"][name] = {"done": True, "seconds": round(time.monotonic() - t0, 1), "command": commands[name]}
        write_json_atomic(state_path, state)
        print(f"{header}: done in {time.monotonic() - t0:.0f} s", flush=True)
    cmp = root / "compare"
    print(f"\nwm demo finished in {time.monotonic() - t_start:.0f} s")
    print(f"report:      {cmp / 'report.html'}  (Markdown: {cmp / 'report.md'})")
    print(f"numbers:     {cmp / 'summary.json'}; every evaluation: {cmp / 'evaluations.csv'}")
    print(f"probe:       {root / 'probe' / 'probe.json'}  (plot: {root / 'probe' / 'probe.png'})")
    if "compare-fixed" in stages:
        print(f"fixed camera: {root / 'compare-fixed' / 'report.html'}")
    print(f"TensorBoard: tensorboard --logdir {root}   (GQN: {root / 'gqn' / 'tb'}, agents: {cmp / 'runs'})")
    probe = root / "probe" / "probe.json"
    if probe.is_file():
        lines = probe_lines(probe)
        if lines:
            print(f"\nstate probe: best held-out R² over {p.context_views} views (1 = the quantity is read exactly)")
            print("\n".join(lines))
    summary = cmp / "summary.json"
    if summary.is_file():
        print("\nmoving camera: " + read_json(summary).get("answer", ""))
    fixed = root / "compare-fixed" / "summary.json"
    if "compare-fixed" in stages and fixed.is_file():
        print("\nfixed camera: " + read_json(fixed).get("answer", ""))
    return 0
