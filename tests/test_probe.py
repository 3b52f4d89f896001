"""State probes (worldmodel.eval.probe, probe_data, probe_cli; `wm eval probe`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import agents_fake_env as fake
import numpy as np
import pytest
import torch

from worldmodel.eval.probe import ProbeConfig, episode_split, r2_per_dim, ridge_probe, run_probe
from worldmodel.eval.probe_data import ProbeFrames, collect_probe_frames

torch.set_num_threads(1)

#: Quick MLP settings for the synthetic tests (a few seconds on one core).
FAST = ProbeConfig(mlp_hidden=64, mlp_epochs=300, mlp_patience=30, mlp_lr=1e-2)


def _synthetic(episodes: int = 60, per_episode: int = 6, seed: int = 0) -> ProbeFrames:
    """Records of a fake world: a random target per episode, a random hand and joints per record."""
    rng = np.random.default_rng(seed)
    n = episodes * per_episode
    target = np.repeat(rng.uniform(-1, 1, (episodes, 3)), per_episode, axis=0)
    hand = rng.uniform(-1, 1, (n, 3))
    joints = rng.uniform(-1, 1, (n, 6))
    return ProbeFrames(
        frames=np.zeros((n, 2, 2, 3), np.uint8),
        viewpoints=np.zeros((n, 5), np.float32),
        episodes=np.repeat(np.arange(episodes), per_episode).astype(np.int64),
        quantities={"hand": hand, "target": target, "target-hand": target - hand, "joints": joints},
    )


def _given(x: np.ndarray):
    """A representation whose features are the rows of ``x``."""
    return lambda data, test: (x[~test], x[test])


def test_probes_recover_linearly_encoded_state_and_not_constants():
    data = _synthetic()
    rng = np.random.default_rng(1)
    state = np.concatenate([data.quantities["hand"], data.quantities["target"], data.quantities["joints"]], axis=1)
    rotation, _ = np.linalg.qr(rng.normal(size=(state.shape[1], state.shape[1])))
    mix = rotation * rng.uniform(0.5, 2.0, state.shape[1])  # random, invertible and well conditioned
    assert np.linalg.cond(mix) < 10  # the features hold the whole state, recoverable without blowing up noise
    result = run_probe(
        data, {"linear": _given(state @ mix), "constant": _given(np.ones((len(data), 4)))}, FAST, progress=False
    )

    assert result["split"]["by"] == "episode"
    assert set(result["quantities"]) == {"hand", "target", "target-hand", "joints"}
    linear, constant = result["representations"]["linear"], result["representations"]["constant"]
    assert linear["feature_dim"] == 12
    for q in result["quantities"]:
        assert linear["probes"]["ridge"][q]["r2"] > 0.99, q
        assert linear["probes"]["mlp"][q]["r2"] > 0.9, q
        assert linear["best"][q] == max(linear["probes"]["ridge"][q]["r2"], linear["probes"]["mlp"][q]["r2"])
        assert len(linear["probes"]["ridge"][q]["r2_per_dim"]) == result["quantities"][q]
        for probe in ("ridge", "mlp"):
            assert constant["probes"][probe][q]["r2"] <= 0.05, (probe, q)
    json.dumps(result)  # JSON-ready


def test_episode_lookup_features_do_not_leak_across_the_episode_split():
    """Features that only name the episode (a random code per episode, unrelated to its target)
    predict the target of *seen* episodes perfectly: a frame split would report a high R².
    The probes' episode split must report none."""
    data = _synthetic(episodes=40, per_episode=6, seed=2)
    rng = np.random.default_rng(3)
    codes = rng.normal(size=(40, 40))  # the lookup table: one independent code per episode
    x = codes[data.episodes]
    target = data.quantities["target"]

    # Frame split (random records on each side, folds by record): the target leaks through the episode codes.
    frame_test = np.random.default_rng(4).random(len(data)) < 0.25
    pred, _ = ridge_probe(x[~frame_test], target[~frame_test], np.arange(len(data))[~frame_test], x[frame_test])
    assert r2_per_dim(target[frame_test], pred).mean() > 0.9

    # Episode split: held-out episodes have codes never seen in training, so nothing to read the target from.
    result = run_probe(data, {"episode-id": _given(x)}, FAST, progress=False)
    rep = result["representations"]["episode-id"]
    assert rep["probes"]["ridge"]["target"]["r2"] < 0.2
    assert rep["probes"]["mlp"]["target"]["r2"] < 0.2
    assert rep["best"]["target"] < 0.2


def test_episode_split_keeps_episodes_whole():
    rng = np.random.default_rng(0)
    episodes = np.repeat(np.arange(40), rng.integers(1, 7, size=40))
    rng.shuffle(episodes)
    test = episode_split(episodes, 0.25, seed=5)
    assert test.dtype == bool and test.shape == episodes.shape
    for e in np.unique(episodes):
        assert len(set(test[episodes == e])) == 1, f"episode {e} is split"
    assert np.unique(episodes[test]).size == 10
    assert np.array_equal(test, episode_split(episodes, 0.25, seed=5))
    assert not np.array_equal(test, episode_split(episodes, 0.25, seed=6))
    assert np.unique(episodes[episode_split(episodes, 0.5, seed=5)]).size == 20
    with pytest.raises(ValueError, match="at least 4 episodes"):
        episode_split(np.array([0, 0, 1, 2]), 0.25, seed=0)


def test_collect_probe_frames_jaco(tmp_path):
    from worldmodel.eval.probe_cli import load_probe_cache, save_probe_cache

    data = collect_probe_frames(
        "wm/JacoReach-v1", size=16, episodes=6, steps=8, frame_skip=4, context=1, seed=3, progress=False
    )
    # context 1, frame skip 4: records at steps 1 and 5 of each episode, each with the step before it
    assert len(data) == 12
    assert data.frames.shape == (12, 16, 16, 3) and data.frames.dtype == np.uint8
    assert data.viewpoints.shape == (12, 5) and data.viewpoints.dtype == np.float32
    assert data.context_frames.shape == (12, 1, 16, 16, 3) and data.context_viewpoints.shape == (12, 1, 5)
    assert np.array_equal(data.episodes, np.repeat(np.arange(6), 2))
    assert {k: v.shape for k, v in data.quantities.items()} == {
        "hand": (12, 3),
        "target": (12, 3),
        "target-hand": (12, 3),
        "joints": (12, 6),
    }
    q = data.quantities
    np.testing.assert_allclose(q["target-hand"], q["target"] - q["hand"])
    for e in range(6):
        assert np.allclose(q["target"][data.episodes == e], q["target"][data.episodes == e][0])
    assert np.unique(q["target"].round(6), axis=0).shape[0] == 6  # a target per episode
    # context = the frames of the steps just before: collected without context and with frame skip 1,
    # an episode holds steps 0..8 in order
    steps = collect_probe_frames("wm/JacoReach-v1", size=16, episodes=2, steps=8, frame_skip=1, seed=3, progress=False)
    assert np.array_equal(steps.episodes, np.repeat([0, 1], 9))
    per_step = steps.frames.reshape(2, 9, 16, 16, 3)
    assert np.array_equal(data.frames[:4].reshape(2, 2, 16, 16, 3), per_step[:, [1, 5]])
    assert np.array_equal(data.context_frames[:4, 0].reshape(2, 2, 16, 16, 3), per_step[:, [0, 4]])
    assert np.array_equal(data.context_viewpoints[:4, 0], steps.viewpoints.reshape(2, 9, 5)[:, [0, 4]].reshape(4, 5))
    assert not np.array_equal(per_step[0, 0], per_step[0, 1])  # the moving camera moves
    assert data.info["env_id"] == "wm/JacoReach-v1" and data.info["context"] == 1

    again = collect_probe_frames(
        "wm/JacoReach-v1", size=16, episodes=6, steps=8, frame_skip=4, context=1, seed=3, progress=False
    )
    assert np.array_equal(again.frames, data.frames) and np.array_equal(again.quantities["joints"], q["joints"])
    other = collect_probe_frames("wm/JacoReach-v1", size=16, episodes=6, steps=8, frame_skip=4, seed=4, progress=False)
    assert other.context_frames is None and len(other) == 18  # no context: steps 0, 4, 8
    assert not np.allclose(other.quantities["target"][::3], q["target"][::2])

    # the cache round trip (plain npz, no pickles)
    save_probe_cache(tmp_path / "frames.npz", data)
    back = load_probe_cache(tmp_path / "frames.npz")
    assert back.info == data.info
    for name in ("frames", "viewpoints", "episodes", "context_frames", "context_viewpoints"):
        assert np.array_equal(getattr(back, name), getattr(data, name)), name
    assert list(back.quantities) == list(q) and all(np.array_equal(back.quantities[k], q[k]) for k in q)
    np.load(tmp_path / "frames.npz", allow_pickle=False)

    with pytest.raises(ValueError, match="no probe quantities.*wm/JacoReach-v1"):
        collect_probe_frames("CartPole-v1", episodes=1, progress=False)
    with pytest.raises(ValueError, match="camera must be one of"):
        collect_probe_frames("wm/JacoReach-v1", camera="orbit", episodes=1, progress=False)
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        collect_probe_frames("wm/JacoReach-v1", episodes=0, progress=False)
    with pytest.raises(ValueError, match="exceeds steps"):
        collect_probe_frames("wm/JacoReach-v1", episodes=1, steps=8, frame_skip=4, context=9, progress=False)


def test_wm_eval_probe_cli(tmp_path, capsys):
    from agents.cli import main
    from worldmodel.checkpoint import load_model_state, save_checkpoint

    # a "trained" tiny GQN: weights unlike any fresh initialisation (its untrained twin must differ)
    fresh, meta = load_model_state(fake.save_tiny_gqn(tmp_path / "fresh", size=16))
    meta = {k: v for k, v in meta.items() if k not in ("files", "checkpoint_dir", "format", "version")}
    ckpt = save_checkpoint(tmp_path / "gqn", {k: v + 0.5 for k, v in fresh.items()}, {**meta, "step": 10})
    out, cache = tmp_path / "probe", tmp_path / "frames.npz"
    argv = [
        "eval",
        "probe",
        "--encoder",
        f"mygqn={ckpt}",
        "--env",
        "wm/JacoReach-v1",
        "--camera",
        "moving",
        "--out",
        str(out),
        "--episodes",
        "8",
        "--steps",
        "8",
        "--frame-skip",
        "4",
        "--views",
        "2",
        "--probes",
        "ridge",
        "--pca-components",
        "6",
        "--cache",
        str(cache),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "probe.json").read_text())
    assert (out / "probe.png").stat().st_size > 0
    reps = ["mygqn", "untrained mygqn", "pixels-pca", "pixels-pca+viewpoint"]
    assert list(result["representations"]) == reps
    quantities = ["hand", "target", "target-hand", "joints"]
    assert list(result["quantities"]) == quantities
    for rep in reps:
        res = result["representations"][rep]
        assert list(res["probes"]) == ["ridge"]
        assert set(res["probes"]["ridge"]) == set(quantities) and set(res["best"]) == set(quantities)
    assert result["representations"]["mygqn"]["feature_dim"] == 8
    assert result["representations"]["mygqn"]["best"] != result["representations"]["untrained mygqn"]["best"]
    assert result["representations"]["pixels-pca"]["feature_dim"] == 6
    assert result["representations"]["pixels-pca+viewpoint"]["feature_dim"] == 6 + 7
    split = result["split"]
    assert split["by"] == "episode" and split["train_episodes"] + split["test_episodes"] == 8
    assert split["train_records"] + split["test_records"] == result["data"]["records"] == 8 * 2
    assert result["data"]["size"] == 16 and result["data"]["context"] == 1 and result["views"] == 2
    enc = result["encoders"]
    assert enc["mygqn"]["path"] == str(ckpt.resolve()) and enc["mygqn"]["untrained"] is None
    assert enc["mygqn"]["step"] == 10 and enc["untrained mygqn"]["step"] == 0
    assert enc["untrained mygqn"]["untrained"]["like"] == str(ckpt.resolve())
    assert result["command"][1:3] == ["eval", "probe"] and result["versions"]["scikit-learn"]
    assert result["frames_source"] == "collected" and cache.is_file()
    for rep in reps:
        assert rep in proc.stdout
    assert "target-hand" in proc.stdout

    # Rerun in-process from the cache: same frames, same numbers.
    capsys.readouterr()
    assert (
        main(
            [
                *argv[:-6],
                "--out",
                str(tmp_path / "again"),
                "--probes",
                "ridge",
                "--pca-components",
                "6",
                "--cache",
                str(cache),
                "--no-untrained",
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "again" / "probe.json").read_text())
    assert again["frames_source"] == "cache" and list(again["representations"]) == [reps[0], *reps[2:]]
    assert list(again["quantities"]) == quantities and again["data"] == result["data"]
    for rep in ("mygqn", "pixels-pca"):
        assert again["representations"][rep]["best"] == result["representations"][rep]["best"]

    def error(*args: str) -> str:
        capsys.readouterr()
        assert main(["eval", "probe", "--out", str(tmp_path / "bad"), *args]) == 2
        return capsys.readouterr().err

    err = error("--encoder", str(ckpt), "--episodes", "9", "--steps", "8", "--views", "2", "--cache", str(cache))
    assert f"--cache {cache}" in err and "episodes: cache 8 vs asked 9" in err
    err = error("--encoder", str(ckpt), "--env", "CartPole-v1")
    assert "--env 'CartPole-v1'" in err and "wm/JacoReach-v1" in err
    err = error("--encoder", str(ckpt), "--views", "10", "--steps", "8")
    assert "--views 10" in err and "--steps 8" in err
    err = error("--encoder", str(tmp_path / "nowhere"))
    assert "--encoder" in err and "nowhere" in err and "no such" in err
    err = error("--encoder", str(ckpt), "--size", "32")
    assert "16x16" in err and "--size 32" in err
    assert not (tmp_path / "bad").exists()


def test_probe_env_kwargs_target_marker(tmp_path, capsys):
    """``--env-kwarg target_marker=true``: other frames (the floor disc), the same world state; recorded and cached."""
    from agents.cli import main
    from worldmodel.eval.probe_cli import parse_env_kwargs

    assert parse_env_kwargs(["target_marker=true", "n=3", "name=abc", "v=[1, 2]"]) == {
        "target_marker": True,
        "n": 3,
        "name": "abc",
        "v": [1, 2],
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_env_kwargs(["target_marker"])

    kw = dict(size=16, episodes=2, steps=4, frame_skip=4, seed=1, progress=False)
    plain = collect_probe_frames("wm/JacoReach-v1", **kw)
    marked = collect_probe_frames("wm/JacoReach-v1", env_kwargs={"target_marker": True}, **kw)
    assert not np.array_equal(plain.frames, marked.frames)  # the marker is seen
    np.testing.assert_array_equal(plain.viewpoints, marked.viewpoints)
    assert list(plain.quantities) == list(marked.quantities)
    for name, values in plain.quantities.items():
        np.testing.assert_allclose(marked.quantities[name], values, err_msg=name)

    ckpt = fake.save_tiny_gqn(tmp_path / "gqn", size=16)
    cache = tmp_path / "frames.npz"
    common = [
        "eval",
        "probe",
        "--encoder",
        f"g={ckpt}",
        "--episodes",
        "8",
        "--steps",
        "4",
        "--frame-skip",
        "4",
        "--probes",
        "ridge",
        "--pca-components",
        "4",
        "--no-untrained",
        "--cache",
        str(cache),
    ]
    assert main([*common, "--out", str(tmp_path / "marked"), "--env-kwarg", "target_marker=true"]) == 0
    result = json.loads((tmp_path / "marked" / "probe.json").read_text())
    assert result["env_kwargs"] == {"target_marker": True} == result["data"]["env_kwargs"]
    assert result["options"]["env_kwarg"] == ["target_marker=true"]

    def error(*args: str) -> str:
        capsys.readouterr()
        assert main([*common, "--out", str(tmp_path / "bad"), *args]) == 2
        return capsys.readouterr().err

    # the cache holds marked frames: a probe without the marker must not reuse them
    err = error()
    assert "env_kwargs: cache {'target_marker': True} vs asked {}" in err
    err = error("--env-kwarg", "camera=fixed")
    assert "--env-kwarg camera" in err and "--camera" in err
    err = error("--env-kwarg", "target_marker")
    assert "KEY=VALUE" in err
    assert not (tmp_path / "bad").exists()
