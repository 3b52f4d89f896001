"""``wm demo``: every stage's command is accepted by the real CLIs, on JacoReach-v1, with >= 3 seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.demo import ENV_ID, PRESETS, STAGES, run_demo, stage_commands


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_run_the_v1_study_with_at_least_three_seeds(preset):
    p = PRESETS[preset]
    assert p.seeds >= 3 and p.eval_episodes >= 30
    cmds = stage_commands(p, Path("/tmp/unused"))
    assert list(cmds) == list(STAGES)
    cmp = cmds["compare"]
    assert cmp[cmp.index("--env") + 1] == ENV_ID == "wm/JacoReach-v1"
    assert "repr-untrained=repr@/tmp/unused/untrained" in cmp


def test_stage_commands_are_accepted_by_the_clis(tmp_path):
    cmds = stage_commands(PRESETS["small"], tmp_path)
    gqn = _run([*cmds["gqn"], "--print-config"])
    assert gqn.returncode == 0, gqn.stderr
    config = json.loads(gqn.stdout)
    assert json.dumps(config).count("0.2") >= 2  # the fixed sigma reached the config
    # The comparison's plan, without running it (the encoders do not exist yet, so only the plan).
    dry = _run([*cmds["compare"], "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    planned = [line for line in dry.stdout.splitlines() if "agent train" in line]
    assert len(planned) == 4 * PRESETS["small"].seeds  # pixels, repr, state, repr-untrained
    assert all("wm/JacoReach-v1" in line for line in planned)


def test_unknown_preset_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="'small'"):
        run_demo("huge", out=str(tmp_path))


def test_demo_help_runs():
    out = _run([sys.executable, "-m", "agents.cli", "demo", "--help"])
    assert out.returncode == 0 and "--preset" in out.stdout
