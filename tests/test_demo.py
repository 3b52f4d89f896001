"""``wm demo``: every stage's command is accepted by the real CLIs, on JacoReach-v1, with >= 3 seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import agents.demo as demo
from agents.demo import ENV_ID, PRESETS, STAGES, preset_stages, run_demo, stage_commands


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


RECIPE = ("data_camera", "target_marker", "gqn_representation", "gqn_features", "context_views", "aggregate")


def _arms(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--arm"]


def _arm_args(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--arm-args"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_run_the_v1_study_with_at_least_three_seeds(preset):
    p = PRESETS[preset]
    assert p.seeds >= 3 and p.eval_episodes >= 30
    cmds = stage_commands(p, Path("/tmp/unused"))
    assert list(cmds) == list(preset_stages(p)) == [s for s in STAGES if s != "compare-fixed" or p.fixed_camera]
    assert list(cmds)[:5] == ["data", "gqn", "untrained", "probe", "compare"]
    cmp = cmds["compare"]
    assert cmp[cmp.index("--env") + 1] == ENV_ID == "wm/JacoReach-v1"
    assert cmp[cmp.index("--camera") + 1] == "moving"
    assert "repr-untrained=repr@/tmp/unused/untrained" in _arms(cmp)
    assert "repr=repr@/tmp/unused/gqn" in _arms(cmp) and "state=state" in _arms(cmp)
    probe = cmds["probe"]
    assert probe[probe.index("--env") + 1] == ENV_ID and probe[probe.index("--camera") + 1] == "moving"
    assert probe[probe.index("--views") + 1] == str(p.context_views)


def test_small_and_full_run_the_same_recipe_as_study():
    for name in ("small", "full"):
        for field in RECIPE:
            assert getattr(PRESETS[name], field) == getattr(PRESETS["study"], field), (name, field)
    small = PRESETS["small"]
    assert not small.fixed_camera and not small.pixels_viewpoint
    assert "compare-fixed" not in stage_commands(small, Path("/tmp/unused"))
    assert PRESETS["full"].fixed_camera and PRESETS["full"].pixels_viewpoint and PRESETS["full"].size == 64


def test_study_preset_stage_commands_hold_the_recipe():
    out = Path("/tmp/unused")
    p = PRESETS["study"]
    assert p.seeds >= 5  # the guide's minimum before claiming a difference
    cmds = stage_commands(p, out)
    assert list(cmds) == ["data", "gqn", "untrained", "probe", "compare", "compare-fixed"]

    data = cmds["data"]
    assert data[data.index("--camera") + 1] == "orbit" and data[data.index("-o") + 1] == "target_marker=true"
    assert data[data.index("--scenes") + 1] == str(p.scenes) and data[data.index("--size") + 1] == str(p.size)

    gqn = cmds["gqn"]
    assert gqn[gqn.index("--representation") + 1] == "lifted" and gqn[gqn.index("--features") + 1] == "spatial"
    assert float(gqn[gqn.index("--lr") + 1]) == p.gqn_lr and gqn[gqn.index("--steps") + 1] == str(p.gqn_steps)
    assert float(gqn[gqn.index("--kl-weight") + 1]) == p.gqn_kl_weight and gqn[gqn.index("--z-channels") + 1] == "1"
    assert gqn[gqn.index("--device") + 1] == "cpu" and gqn[gqn.index("--sigma-end") + 1] == "0.1"

    probe = cmds["probe"]
    assert f"gqn={out / 'gqn'}" in probe and f"untrained={out / 'untrained'}" in probe
    assert probe[probe.index("--views") + 1] == "12" and probe[probe.index("--steps") + 1] == "20"
    assert probe[probe.index("--episodes") + 1] == str(p.probe_episodes) and probe[probe.index("--out") + 1] == str(
        out / "probe"
    )
    assert probe[probe.index("--env-kwarg") + 1] == "target_marker=true"

    cmp = cmds["compare"]
    assert _arms(cmp) == [
        "pixels=pixels",
        "pixels+viewpoint=pixels+viewpoint",
        f"repr=repr@{out / 'gqn'}",
        f"repr-untrained=repr@{out / 'untrained'}",
        "state=state",
    ]
    assert _arm_args(cmp) == [
        "repr=--context-views 12 --aggregate mean",
        "repr-untrained=--context-views 12 --aggregate mean",
    ]
    assert cmp[cmp.index("--env-kwarg") + 1] == "target_marker=true"
    for flag, value in (
        ("--seeds", str(p.seeds)),
        ("--steps", str(p.agent_steps)),
        ("--eval-freq", str(p.eval_freq)),
        ("--eval-episodes", "30"),
        ("--reps", str(p.reps)),
        ("--out", str(out / "compare")),
    ):
        assert cmp[cmp.index(flag) + 1] == value, flag

    fixed = cmds["compare-fixed"]
    assert fixed[fixed.index("--camera") + 1] == "fixed" and fixed[fixed.index("--out") + 1] == str(
        out / "compare-fixed"
    )
    assert _arms(fixed) == ["pixels=pixels", f"repr=repr@{out / 'gqn'}"]
    assert _arm_args(fixed) == ["repr=--context-views 12 --aggregate mean"]
    assert fixed[fixed.index("--env-kwarg") + 1] == "target_marker=true"
    for flag in ("--seeds", "--steps", "--size", "--eval-freq", "--eval-episodes", "--reps"):
        assert fixed[fixed.index(flag) + 1] == cmp[cmp.index(flag) + 1], flag


def _planned(cmd: list[str]) -> list[str]:
    dry = _run([*cmd, "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    return [line for line in dry.stdout.splitlines() if "agent train" in line]


def test_stage_commands_are_accepted_by_the_clis(tmp_path):
    from agents.cli import build_parser

    cmds = stage_commands(PRESETS["small"], tmp_path)
    gqn = _run([*cmds["gqn"], "--print-config"])
    assert gqn.returncode == 0, gqn.stderr
    config = json.loads(gqn.stdout)
    assert config["model"]["sigma_start"] == config["model"]["sigma_end"] == 0.1  # the fixed sigma reached the config
    assert config["model"]["representation"] == "lifted" and config["model"]["features"] == "spatial"
    assert config["train"]["lr"] == 1e-3 and config["model"]["image_size"] == 32
    # The data and probe stages' arguments parse (running them needs the data / the encoders).
    parser = build_parser()
    data = parser.parse_args(cmds["data"][3:])
    assert data.camera == "orbit" and data.option == ["target_marker=true"]
    probe = parser.parse_args(cmds["probe"][3:])
    assert probe.views == 12 and probe.untrained == f"untrained={tmp_path / 'untrained'}"
    assert probe.env_kwarg == ["target_marker=true"] and probe.encoder == [f"gqn={tmp_path / 'gqn'}"]
    # The comparison's plan, without running it (the encoders do not exist yet, so only the plan).
    planned = _planned(cmds["compare"])
    assert len(planned) == 4 * PRESETS["small"].seeds  # pixels, repr, repr-untrained, state
    assert all("wm/JacoReach-v1" in line and "target_marker=true" in line for line in planned)
    reprs = [line for line in planned if "--obs repr" in line]
    assert len(reprs) == 2 * PRESETS["small"].seeds
    # the arm's --context-views / --aggregate come after the grid's options
    assert all(line.endswith("--context-views 12 --aggregate mean") for line in reprs)


def test_study_comparisons_are_accepted_by_the_cli(tmp_path):
    cmds = stage_commands(PRESETS["study"], tmp_path)
    seeds = PRESETS["study"].seeds
    planned = _planned(cmds["compare"])
    assert len(planned) == 5 * seeds  # pixels, pixels+viewpoint, repr, repr-untrained, state
    assert sum("--obs pixels+viewpoint" in line for line in planned) == seeds
    assert all("--camera moving" in line for line in planned)
    fixed = _planned(cmds["compare-fixed"])
    assert len(fixed) == 2 * seeds  # pixels, repr
    assert all("--camera fixed" in line and "--camera moving" not in line for line in fixed)
    assert all(line.endswith("--context-views 12 --aggregate mean") for line in fixed if "--obs repr" in line)


def test_old_demo_json_without_the_probe_stage_resumes_it(tmp_path, monkeypatch, capsys):
    """A demo.json of before the probe stage: the finished stages are skipped, the probe runs, then the comparison."""
    p = PRESETS["small"]
    old = {
        "preset": "small",
        "settings": {"scenes": 600, "gqn_sigma": 0.2},
        "stages": {
            name: {"done": True, "seconds": 1.0, "command": []} for name in ("data", "gqn", "untrained", "compare")
        },
    }
    (tmp_path / "demo.json").write_text(json.dumps(old))
    cmds = stage_commands(p, tmp_path)
    ran: list[list[str]] = []

    def fake_call(cmd):
        ran.append(cmd)
        if cmd == cmds["probe"]:
            (tmp_path / "probe").mkdir()
            reps = {
                "gqn": {"best": {"hand": 0.5, "target": 0.25, "target-hand": 0.75, "joints": 0.1}},
                "untrained": {"best": {"hand": 0.125, "target": 0.0625, "target-hand": 0.0, "joints": 0.0}},
            }
            (tmp_path / "probe" / "probe.json").write_text(json.dumps({"representations": reps}))
        if cmd == cmds["compare"]:
            (tmp_path / "compare").mkdir(exist_ok=True)
            (tmp_path / "compare" / "summary.json").write_text(json.dumps({"answer": "THE ANSWER"}))
        return 0

    monkeypatch.setattr(demo.subprocess, "call", fake_call)
    assert run_demo("small", out=str(tmp_path)) == 0
    assert ran == [cmds["probe"], cmds["compare"]]  # compare resumes itself: it always runs
    state = json.loads((tmp_path / "demo.json").read_text())
    assert state["stages"]["probe"]["done"] and state["stages"]["probe"]["command"] == cmds["probe"]
    captured = capsys.readouterr()
    assert "settings changed" in captured.err and "gqn_sigma" in captured.err
    lines = captured.out.splitlines()
    assert any(line.split() == ["gqn", "0.750", "0.500", "0.250"] for line in lines), captured.out
    assert any(line.split() == ["untrained", "0.000", "0.125", "0.062"] for line in lines), captured.out
    assert "THE ANSWER" in captured.out

    # Rerun: only the self-resuming comparison runs again; a failing stage stops the demo with its code.
    ran.clear()
    assert run_demo("small", out=str(tmp_path)) == 0 and ran == [cmds["compare"]]
    (tmp_path / "probe" / "probe.json").unlink()
    state["stages"].pop("probe")
    (tmp_path / "demo.json").write_text(json.dumps(state))
    monkeypatch.setattr(demo.subprocess, "call", lambda cmd: ran.append(cmd) or 3)
    ran.clear()
    assert run_demo("small", out=str(tmp_path)) == 3 and ran == [cmds["probe"]]


def test_unknown_preset_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="'small'"):
        run_demo("huge", out=str(tmp_path))


def test_demo_help_runs():
    out = _run([sys.executable, "-m", "agents.cli", "demo", "--help"])
    assert out.returncode == 0 and "--preset" in out.stdout
    assert "{" + ",".join(PRESETS) + "}" in out.stdout.replace("\n", "").replace(" ", "")  # every preset is accepted


def test_threads_reach_the_gqn_probe_and_resume_commands(tmp_path, monkeypatch):
    from agents.cli import build_parser

    cmds = stage_commands(PRESETS["small"], tmp_path, threads=1)
    gqn = _run([*cmds["gqn"], "--print-config"])
    assert gqn.returncode == 0, gqn.stderr
    assert json.loads(gqn.stdout)["train"]["threads"] == 1
    assert build_parser().parse_args(cmds["probe"][3:]).threads == 1
    assert "--threads" not in stage_commands(PRESETS["small"], tmp_path)["gqn"]  # unset: torch's default

    # An interrupted GQN stage resumes with the threads of the rerun.
    (tmp_path / "gqn" / "checkpoints" / "step_00000001").mkdir(parents=True)
    ran: list[list[str]] = []
    monkeypatch.setattr(demo.subprocess, "call", lambda cmd: ran.append(cmd) or (7 if "--resume" in cmd else 0))
    assert run_demo("small", out=str(tmp_path), threads=1) == 7  # data ran (0), then the GQN resume (7)
    assert ran[-1][-5:] == ["--resume", "--out", str(tmp_path / "gqn"), "--threads", "1"]
    with pytest.raises(ValueError, match="--threads must be >= 0"):
        run_demo("small", out=str(tmp_path), threads=-1)
