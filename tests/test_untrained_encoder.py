"""Untrained twins of trained encoders (worldmodel.untrained, `wm train untrained`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import agents_fake_env as fake
import numpy as np
import pytest
import torch

from worldmodel import load_encoder
from worldmodel.atomic import file_sha256
from worldmodel.checkpoint import load_model_state, save_checkpoint
from worldmodel.untrained import make_untrained, untrained_info


def _trained_gqn_run(tmp_path):
    """A GQN 'run directory' whose newest checkpoint has weights unlike a fresh init (perturbed)."""
    src = fake.save_tiny_gqn(tmp_path / "tmp_gqn", size=16)
    state, meta = load_model_state(src)
    state = {k: v + 0.5 for k, v in state.items()}  # "trained": not what any seed initialises
    meta = {k: v for k, v in meta.items() if k not in ("files", "checkpoint_dir", "format", "version")}
    run = tmp_path / "gqn_run"
    save_checkpoint(run / "checkpoints" / "step_00000010", state, {**meta, "step": 10})
    return run


def test_untrained_twin_has_same_architecture_fresh_seeded_weights(tmp_path):
    run = _trained_gqn_run(tmp_path)
    trained_ckpt = run / "checkpoints" / "step_00000010"
    a = make_untrained(run, tmp_path / "u0", seed=0)
    b = make_untrained(run, tmp_path / "u0b", seed=0)
    c = make_untrained(run, tmp_path / "u1", seed=1)

    info = untrained_info(a)
    assert info["seed"] == 0 and info["like_learner"] == "gqn" and info["like_step"] == 10
    assert info["like_sha256"] == file_sha256(trained_ckpt / "model.safetensors")
    assert info["like"] == str(trained_ckpt.resolve())
    assert untrained_info(trained_ckpt) is None
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["step"] == 0 and cfg["learner"] == "gqn" and "train" not in cfg

    # same seed -> identical weights (same bytes); another seed -> other weights; never the trained ones
    assert file_sha256(a / "model.safetensors") == file_sha256(b / "model.safetensors")
    assert file_sha256(a / "model.safetensors") != file_sha256(c / "model.safetensors")
    sa, sc, st = load_model_state(a)[0], load_model_state(c)[0], load_model_state(trained_ckpt)[0]
    assert sa.keys() == st.keys() and all(sa[k].shape == st[k].shape for k in sa)
    assert any(not torch.equal(sa[k], st[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())

    # the global torch RNG of the caller is untouched
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_untrained(run, tmp_path / "u2", seed=5)
    assert torch.equal(torch.rand(3), expected)

    # loads as a frozen encoder of the same shape as the trained one, with different features
    enc_u, enc_t = load_encoder(str(a)), load_encoder(str(run))
    assert (enc_u.feature_dim, enc_u.image_size, enc_u.name) == (enc_t.feature_dim, enc_t.image_size, enc_t.name)
    frames = np.random.default_rng(0).integers(0, 255, size=(2, 16, 16, 3), dtype=np.uint8)
    views = np.zeros((2, 7), dtype=np.float32)
    assert not np.allclose(enc_u.encode_numpy(frames, views), enc_t.encode_numpy(frames, views))


def test_untrained_refuses_to_overwrite_other_content(tmp_path):
    run = _trained_gqn_run(tmp_path)
    out = make_untrained(run, tmp_path / "u", seed=0)
    before = (out / "config.json").stat().st_mtime_ns
    assert make_untrained(run, out, seed=0) == out  # same source + seed: left as it is
    assert (out / "config.json").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="not the untrained twin .* with seed 1"):
        make_untrained(run, out, seed=1)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        make_untrained(run, tmp_path / "busy", seed=0)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError):
        make_untrained(tmp_path / "nothing", tmp_path / "u9")


def test_untrained_niso_twin(tmp_path):
    from worldmodel.models.niso import build_niso

    model = build_niso("tiny", in_channels=3)
    cfg = {f: getattr(model.config, f) for f in model.config.__dataclass_fields__}
    cfg["channels"], cfg["skips"] = list(cfg["channels"]), list(cfg["skips"])
    src = save_checkpoint(
        tmp_path / "niso",
        {k: v + 0.25 for k, v in model.state_dict().items()},
        {"learner": "niso", "model": cfg, "step": 7},
    )
    out = make_untrained(src, tmp_path / "niso_untrained", seed=3)
    enc = load_encoder(str(out))
    assert enc.name == "niso" and enc.feature_dim == load_encoder(str(src)).feature_dim
    assert untrained_info(out)["like_learner"] == "niso"


def test_wm_train_untrained_cli(tmp_path):
    run = _trained_gqn_run(tmp_path)
    out = tmp_path / "cli_untrained"
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "train",
        "untrained",
        "--like",
        str(run),
        "--out",
        str(out),
        "--seed",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    assert printed["checkpoint"] == str(out) and printed["seed"] == 2
    assert untrained_info(out)["like_sha256"] == file_sha256(
        run / "checkpoints" / "step_00000010" / "model.safetensors"
    )
    proc = subprocess.run(cmd[:-1] + ["3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not the untrained twin" in proc.stderr
