"""The comparison grid (agents.compare): arms, the deterministic plan and its shards, reuse and
resume of runs, the reference, aggregation. Trainers are real subprocesses of
``agents_fake_train.py`` (same command line as ``wm agent train``, millisecond runs); the
statistics and the report are the real ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import agents_fake_env as fake
import agents_fake_train as fake_train
import pytest

import agents.compare as compare
from agents.cli import build_parser
from agents.commands import _compare_config
from agents.compare import GRID_FILE, REFERENCE_FILE, Shard, _check_grid, plan_grid, shard_runs
from agents.config import ArmSpec, CompareConfig, arms_for_obs_modes

STATE_ENV = "wm/JacoReach-v0"


def _cfg(out: Path, arms=None, **kw) -> CompareConfig:
    arms = arms or (
        ArmSpec("state", "state"),
        ArmSpec("pixels", "pixels"),
        ArmSpec("state-norm", "state", None, ("--normalize",)),
    )
    values = dict(
        env_id=STATE_ENV,
        arms=tuple(arms),
        seeds=3,
        steps=400,
        eval_freq=100,
        eval_episodes=4,
        jobs=2,
        bootstrap_reps=200,
        out=str(out),
    )
    values.update(kw)
    return CompareConfig(**values).validate()


@pytest.fixture
def reference(monkeypatch):
    """measure_reference replaced by a deterministic one that counts its calls."""
    import agents.reference as ref_mod

    calls = []

    def measure(env_id, env_kwargs, seeds):
        calls.append((env_id, dict(env_kwargs), list(seeds)))
        n = len(seeds)
        return ref_mod.ReferenceScores(
            expert_return=10.0,
            zero_return=1.0,
            expert_returns=(10.0,) * n,
            zero_returns=(1.0,) * n,
            seeds=tuple(seeds),
            env_id=env_id,
            source="fake scripted expert",
        )

    monkeypatch.setattr(ref_mod, "measure_reference", measure)
    return calls


# ---------------------------------------------------------------- arms and the CLI


def test_arm_specs_parse_and_validate():
    a = ArmSpec.parse("repr-niso=repr@/ckpt/niso")
    assert (a.name, a.obs, a.encoder, a.train_args) == ("repr-niso", "repr", "/ckpt/niso", ())
    assert ArmSpec.parse("pixels+viewpoint=pixels+viewpoint") == ArmSpec("pixels+viewpoint", "pixels+viewpoint")
    assert ArmSpec.from_dict(json.loads(json.dumps(CompareConfig(arms=(a,)).to_dict()["arms"][0]))) == a
    with pytest.raises(ValueError, match="NAME=OBS"):
        ArmSpec.parse("repr")
    with pytest.raises(ValueError, match=r"unknown obs mode 'rgb'; valid values: 'pixels', 'repr', 'state'"):
        ArmSpec.parse("x=rgb")
    with pytest.raises(
        ValueError, match=r"arm 'repr-x' \(obs repr\) needs an encoder checkpoint: --arm repr-x=repr@DIR"
    ):
        ArmSpec.parse("repr-x=repr")
    with pytest.raises(ValueError, match="only used with obs 'repr'"):
        ArmSpec.parse("state=state@/ckpt")
    with pytest.raises(ValueError, match="arm name 'a/b' is not allowed"):
        ArmSpec.parse("a/b=state")
    with pytest.raises(ValueError, match="may not set --seed"):
        ArmSpec("s", "state", None, ("--seed", "3")).validate()
    with pytest.raises(ValueError, match="repeated: state"):
        CompareConfig(arms=(ArmSpec("state", "state"), ArmSpec("state", "pixels"))).validate()
    with pytest.raises(ValueError, match="at least one arm"):
        CompareConfig().validate()
    with pytest.raises(ValueError, match="grid's train args may not set --eval-episodes"):
        CompareConfig(arms=(ArmSpec("state", "state"),), train_args=("--eval-episodes=3",)).validate()
    d = CompareConfig()
    assert (d.eval_episodes, d.threshold, d.eval_seed) == (30, 0.8, 1_000_000)


def test_config_round_trip_and_older_layout():
    cfg = CompareConfig(
        arms=(ArmSpec("repr-niso", "repr", "/n", ("--normalize",)), ArmSpec("state", "state")),
        env_kwargs={"episode_length": 16},
        train_args=("--hp", "gamma=0.9"),
    )
    assert CompareConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = {
        "env_id": "wm/JacoReach-v0",
        "obs_modes": ["pixels", "repr"],
        "encoder": "/gqn",
        "seeds": 2,
        "train_args": ["--hp", "n_steps=32", "--env-kwarg", "episode_length=16", "--env-kwarg", "domain=sim"],
    }
    cfg = CompareConfig.from_dict(old)
    assert cfg.arms == (ArmSpec("pixels", "pixels"), ArmSpec("repr", "repr", "/gqn")) and cfg.seeds == 2
    assert cfg.train_args == ("--hp", "n_steps=32") and cfg.env_kwargs == {"episode_length": 16, "domain": "sim"}


def _cli_cfg(*argv: str) -> CompareConfig:
    return _compare_config(build_parser().parse_args(["agent", "compare", *argv]))


def test_compare_cli_arms(tmp_path):
    enc = str(tmp_path / "gqn")
    cfg = _cli_cfg("--out", str(tmp_path / "c"), "--encoder", enc)
    assert cfg.arms == arms_for_obs_modes(("pixels", "repr", "state"), str(Path(enc).resolve()))
    cfg = _cli_cfg(
        "--out",
        "o",
        "--arm",
        "repr-niso=repr@niso",
        "--arm",
        "pixels+viewpoint=pixels+viewpoint",
        "--arm",
        "s2=state",
        "--arm-args",
        "s2=--normalize --hp gamma=0.98",
        "--env-kwarg",
        "episode_length=16",
        "--hp",
        "n_steps=32",
    )
    assert cfg.arm_names == ["repr-niso", "pixels+viewpoint", "s2"]
    assert cfg.arm("repr-niso").encoder == str(Path("niso").resolve())
    assert cfg.arm("s2").train_args == ("--normalize", "--hp", "gamma=0.98")
    assert cfg.env_kwargs == {"episode_length": 16} and cfg.train_args == ("--hp", "n_steps=32")
    assert _cli_cfg("--out", "o", "--obs", "state", "--arm", "p=pixels").arm_names == ["state", "p"]
    with pytest.raises(ValueError, match="repeated: state"):
        _cli_cfg("--out", "o", "--obs", "state", "--arm", "state=state")
    with pytest.raises(ValueError, match="--arm-args names unknown arm"):
        _cli_cfg("--out", "o", "--obs", "state", "--arm-args", "pixels=--normalize")
    with pytest.raises(ValueError, match="--obs has no repr"):
        _cli_cfg("--out", "o", "--obs", "state", "--encoder", enc)

    # every run: `wm agent train --arm NAME`, the grid's evaluation seeds, the arm's args last
    run = next(r for r in plan_grid(cfg) if r.name == "s2_s1")
    cmd = run.command
    assert cmd[cmd.index("--arm") + 1] == "s2" and cmd[cmd.index("--obs") + 1] == "state"
    assert cmd[cmd.index("--eval-seed") + 1] == "1000000" and cmd[cmd.index("--eval-episodes") + 1] == "30"
    assert cmd[cmd.index("--env-kwarg") + 1] == "episode_length=16"
    assert cmd[-5:] == ["--hp", "n_steps=32", "--normalize", "--hp", "gamma=0.98"]  # the grid's, then the arm's
    assert "--encoder" not in cmd and "--size" not in cmd
    rn = next(r for r in plan_grid(cfg) if r.name == "repr-niso_s0").command
    assert rn[rn.index("--encoder") + 1] == str(Path("niso").resolve())


def test_dry_run_prints_the_shard(tmp_path, capsys):
    from agents.cli import main as wm

    out = tmp_path / "c"
    base = ["agent", "compare", "--obs", "state", "pixels", "--seeds", "3", "--out", str(out), "--dry-run"]
    assert wm(base) == 0
    full = capsys.readouterr().out.splitlines()
    assert wm([*base, "--shard", "1/4"]) == 0
    part = capsys.readouterr().out.splitlines()
    assert len(full) == 6 and part == [full[1], full[5]]
    assert not out.exists()
    assert wm([*base, "--shard", "4/4"]) == 2
    assert "shard 4/4 is not valid" in capsys.readouterr().err


def test_plan_order_and_round_robin_shards(tmp_path):
    cfg = _cfg(tmp_path, seeds=4)
    plan = plan_grid(cfg)
    assert [r.name for r in plan[:4]] == ["state_s0", "pixels_s0", "state-norm_s0", "state_s1"]
    assert [r.index for r in plan] == list(range(12))
    shards = [shard_runs(plan, Shard(i, 5)) for i in range(5)]
    assert sorted(r.name for s in shards for r in s) == sorted(r.name for r in plan)
    assert [r.index for r in shards[2]] == [2, 7]
    assert plan == plan_grid(cfg)  # deterministic
    assert Shard.parse("3/8") == Shard(3, 8)
    for bad in ("8/8", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="i/n|not valid"):
            Shard.parse(bad)


# ---------------------------------------------------------------- reuse guard


def test_grid_signature_guards_reuse(tmp_path):
    enc_a = fake.save_tiny_gqn(tmp_path / "gqn_a", size=16, seed=0)
    enc_b = fake.save_tiny_gqn(tmp_path / "gqn_b", size=16, seed=1)
    out = tmp_path / "c"
    out.mkdir()
    state, repr_a = ArmSpec("state", "state"), ArmSpec("repr", "repr", str(enc_a))
    _check_grid(_cfg(out, arms=(state, repr_a)))
    _check_grid(_cfg(out, arms=(state, repr_a), seeds=5))  # more seeds: fine
    _check_grid(_cfg(out, arms=(state, repr_a, ArmSpec("pixels", "pixels"))))  # a new arm: fine
    with pytest.raises(ValueError, match=r"other settings \(steps: 400 -> 800\)"):
        _check_grid(_cfg(out, arms=(state,), steps=800))
    with pytest.raises(ValueError, match="arm repr: .*encoder_sha256"):
        _check_grid(_cfg(out, arms=(state, ArmSpec("repr", "repr", str(enc_b)))))
    # the same weights moved elsewhere are the same encoder
    moved = tmp_path / "moved"
    os.rename(enc_a, moved)
    _check_grid(_cfg(out, arms=(state, ArmSpec("repr", "repr", str(moved)))))
    # an arm left out and added back with another spec is still refused
    _check_grid(_cfg(out, arms=(state,)))
    with pytest.raises(ValueError, match="arm pixels: .*--normalize"):
        _check_grid(_cfg(out, arms=(state, ArmSpec("pixels", "pixels", None, ("--normalize",)))))
    sig = json.loads((out / GRID_FILE).read_text())["signature"]
    assert set(sig["arms"]) == {"state", "repr", "pixels"} and sig["eval_seed"] == 1_000_000


# ---------------------------------------------------------------- shards, aggregation, reference


def _summary(out: Path) -> str:
    return (out / "summary.json").read_text().replace(str(out), "OUT")


def test_two_shards_then_aggregate_equal_one_grid(tmp_path, monkeypatch, reference, capsys):
    fake_train.use_fake_trainer(monkeypatch)
    sharded, single = tmp_path / "sharded", tmp_path / "single"
    cfg = _cfg(sharded, env_kwargs={"episode_length": 16, "domain": "randomised"}, camera="moving")
    plan = plan_grid(cfg)

    r0, files = compare.compare(cfg, shard=Shard(0, 2), log=print)
    assert files is None and not (sharded / "summary.json").exists() and not reference
    assert sorted(r0.finished) == sorted(r.name for r in plan if r.index % 2 == 0)
    assert sorted(p.name for p in (sharded / "runs").iterdir()) == sorted(r0.finished)

    # aggregating half a grid: a report that names the missing runs
    files = compare.aggregate(sharded)
    notes = json.loads((sharded / "summary.json").read_text())["notes"]
    missing = sorted(r.name for r in plan if r.index % 2 == 1)
    assert any(f"{len(missing)} of the 9 planned runs are missing" in n and all(m in n for m in missing) for n in notes)
    assert "planned runs are missing" in files["markdown"].read_text()

    r1, _ = compare.compare(cfg, shard=Shard(1, 2))
    assert sorted(r1.finished) == missing and not r1.skipped
    for run in plan:  # every planned run exactly once, with the grid's own command
        launches = [json.loads(line) for line in (run.out / "launches.jsonl").read_text().splitlines()]
        assert len(launches) == 1 and launches[0]["argv"] == run.command[2:]
    compare.aggregate(sharded)

    single_cfg = _cfg(single, env_kwargs={"episode_length": 16, "domain": "randomised"}, camera="moving")
    result, _ = compare.compare(single_cfg)
    assert len(result.finished) == 9
    assert _summary(sharded) == _summary(single)
    assert (sharded / "evaluations.csv").read_text() == (single / "evaluations.csv").read_text()

    # the reference: measured once per comparison on the runs' env kwargs without the visual ones,
    # over the evaluation seeds, cached in reference.json and named in the setup table
    assert reference == [(STATE_ENV, {"episode_length": 16}, list(range(1_000_000, 1_000_004)))] * 2
    saved = json.loads((sharded / REFERENCE_FILE).read_text())
    assert saved["expert_return"] == 10.0 and saved["seeds"] == list(range(1_000_000, 1_000_004))
    setup = json.loads((sharded / "summary.json").read_text())["setup"]
    assert setup["reference measurement"] == (
        "expert 10 (score 1), zero-action 1 (score 0): fake scripted expert; on wm/JacoReach-v0, obs state, "
        "env kwargs episode_length=16 (visual options dropped); reference.json"
    )
    assert setup["per-arm differences"] == "state-norm: --normalize"
    assert setup["arm state-norm"] == "obs state, extra train args: --normalize"

    # restarting a complete grid runs nothing and re-reads the cached reference
    again, _ = compare.compare(cfg)
    assert again.skipped and not again.finished and len(reference) == 2


def test_reference_is_measured_again_for_other_evaluation_seeds(tmp_path, reference):
    cfg = _cfg(tmp_path)
    compare.reference_scores(cfg)
    compare.reference_scores(cfg)
    assert len(reference) == 1
    compare.reference_scores(_cfg(tmp_path, eval_seed=5))
    assert len(reference) == 2 and reference[-1][2][0] == 5


def test_aggregate_cli(tmp_path, monkeypatch, reference, capsys):
    from agents.cli import main as wm

    fake_train.use_fake_trainer(monkeypatch)
    out = tmp_path / "c"
    compare.compare(_cfg(out, arms=(ArmSpec("state", "state"),)), shard=Shard(0, 1))
    assert wm(["agent", "aggregate", str(out), "--reps", "100", "--threshold", "0.5"]) == 0
    assert "report:" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] == 0.5 and summary["bootstrap_reps"] == 100
    assert wm(["agent", "report", "--out", str(out)]) == 0  # the older name; recorded settings by default
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] == 0.8 and summary["bootstrap_reps"] == 200
    assert wm(["agent", "aggregate", str(tmp_path / "nothing")]) == 2
    assert "compare_config.json not found" in capsys.readouterr().err


# ---------------------------------------------------------------- failures, kills and resume


def test_failed_run_directory_is_kept_and_relaunched(tmp_path, monkeypatch, reference):
    fake_train.use_fake_trainer(monkeypatch)
    out = tmp_path / "c"
    cfg = _cfg(out, seeds=2)
    out.mkdir()
    (out / "fake_control.json").write_text(json.dumps({"pixels_s1": "fail"}))
    result, files = compare.compare(cfg)
    assert result.failed == ["pixels_s1"] and len(result.finished) == 5
    assert "pixels_s1" in " ".join(json.loads((out / "summary.json").read_text())["notes"])
    run = out / "runs" / "pixels_s1"
    assert (run / "checkpoint.json").is_file() and not (run / "done.json").exists()

    result, _ = compare.compare(cfg)
    assert result.finished == ["pixels_s1"] and len(result.skipped) == 5
    assert json.loads((run / "done.json").read_text())["resumed_from"] == 200
    assert (run / "train.log").read_text().count("grid launch") == 2  # both attempts' output kept


def test_killed_grid_restarts_unfinished_runs_from_their_directories(tmp_path, monkeypatch, reference):
    out = tmp_path / "c"
    cfg = _cfg(out, seeds=2)
    out.mkdir()
    (out / "fake_control.json").write_text(json.dumps({"state_s0": "hang", "pixels_s0": "hang"}))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    repo = Path(compare.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    grid = subprocess.Popen(
        [sys.executable, fake_train.__file__, "--grid", str(tmp_path / "cfg.json")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pid_files = [out / "runs" / n / "hanging.pid" for n in ("state_s0", "pixels_s0")]
    deadline = time.monotonic() + 300  # a safety net, not a timing assertion
    while not all(p.is_file() for p in pid_files):
        assert grid.poll() is None, grid.stdout.read()
        assert time.monotonic() < deadline, "the fake runs never reached their checkpoint"
        time.sleep(0.05)
    grid.send_signal(signal.SIGTERM)  # what a cluster does on pre-emption
    output, _ = grid.communicate(timeout=120)
    assert grid.returncode != 0
    for p in pid_files:  # the grid stopped its own runs before exiting
        with pytest.raises(ProcessLookupError):
            os.kill(int(p.read_text()), 0)
    assert not any(
        is_done for is_done in ((out / "runs" / n / "done.json").exists() for n in ("state_s0", "pixels_s0"))
    )

    fake_train.use_fake_trainer(monkeypatch)
    (out / "fake_control.json").unlink()
    result, _ = compare.compare(cfg)
    assert sorted(result.finished) == sorted(r.name for r in plan_grid(cfg)) and not result.failed
    for name in ("state_s0", "pixels_s0"):  # resumed from the checkpoint the killed attempt left
        run = out / "runs" / name
        assert json.loads((run / "done.json").read_text())["resumed_from"] == 200
        assert (run / "hanging.pid").is_file()  # nothing of the killed attempt was deleted
        assert len((run / "launches.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "runs" / "state_s1" / "done.json").read_text())["resumed_from"] is None


def test_real_grid_killed_and_restarted_resumes_from_checkpoint(tmp_path):
    """`wm agent compare` with a real PPO run: SIGTERM after its first checkpoint, then the same command again."""
    out = tmp_path / "c"
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "agent",
        "compare",
        "--env",
        STATE_ENV,
        "--obs",
        "state",
        "--seeds",
        "1",
        "--steps",
        "4096",
        "--checkpoint-freq",
        "256",
        "--eval-freq",
        "2048",
        "--eval-episodes",
        "2",
        "--n-envs",
        "2",
        "--hp",
        "n_steps=64",
        "--hp",
        "batch_size=64",
        "--hp",
        "n_epochs=1",
        "--env-kwarg",
        "episode_length=16",
        "--reps",
        "100",
        "--jobs",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    grid = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = out / "runs" / "state_s0"
    deadline = time.monotonic() + 300  # a safety net, not a timing assertion
    while not (run / "checkpoints" / "latest.json").is_file():
        assert grid.poll() is None, grid.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run never wrote a checkpoint"
        time.sleep(0.05)
    grid.send_signal(signal.SIGTERM)
    grid.communicate(timeout=120)
    assert grid.returncode != 0 and not (run / "done.json").exists()

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "0 already finished (skipped), 1 to run, 1 at a time (1 restarted from their run directories)" in proc.stdout
    done = json.loads((run / "done.json").read_text())
    assert done["arm"] == "state" and done["resumed_from"] and done["resumed_from"][0] >= 256
    assert (run / "train.log").read_text().count("grid launch") == 2
    assert (out / "report.md").is_file() and (out / REFERENCE_FILE).is_file()
