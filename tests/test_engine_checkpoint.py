"""Checkpoints: bit-exact round trip of model + optimizer state, no unpickling, atomic layout,
and clear errors for corrupted, truncated or missing files."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from worldmodel import checkpoint as ckpt
from worldmodel.models.gqn import GQN
from worldmodel.models.gqn_config import GQNConfig
from worldmodel.train.engine import rng_state, set_rng_state

CFG = GQNConfig(
    image_size=16, r_channels=16, hidden_channels=8, z_channels=2, generation_steps=2, kernel_size=3, shared_core=False
)


def _batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "context_frames": torch.rand(4, 2, 3, 16, 16, generator=g),
        "context_viewpoints": torch.randn(4, 2, 7, generator=g),
        "query_frame": torch.rand(4, 3, 16, 16, generator=g),
        "query_viewpoint": torch.randn(4, 7, generator=g),
    }


def _step(model: GQN, opt: torch.optim.Optimizer, seed: int) -> float:
    torch.manual_seed(seed)
    loss = model.loss(_batch(seed))["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _trained(tmp_path):
    torch.manual_seed(0)
    model = GQN(CFG)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for s in range(3):
        _step(model, opt, s)
    path = ckpt.save_checkpoint(
        tmp_path / "checkpoints" / ckpt.step_dir_name(3),
        model.state_dict(),
        {"learner": "gqn", "model": dataclasses.asdict(CFG), "step": 3},
        {"step": 3, "optimizer": opt.state_dict(), "rng": rng_state(), "nested": {7: (1, 2.5, None), "s": ["a"]}},
    )
    model.draws_after_save = torch.rand(5)  # what the RNG gave right after its state was saved
    return model, opt, path


def test_round_trip_is_bit_exact_and_training_continues_identically(tmp_path):
    model, opt, path = _trained(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "train_state.json",
        "train_state.safetensors",
    ]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left

    state, meta = ckpt.load_model_state(tmp_path)  # the run dir resolves to its newest checkpoint
    assert meta["step"] == 3 and meta["learner"] == "gqn" and meta["format"] == ckpt.CHECKPOINT_FORMAT
    torch.manual_seed(123)  # a different initialisation, overwritten by the load
    model2 = GQN(dataclasses.replace(CFG))
    model2.load_state_dict(state, strict=True)
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), n
    train_state = ckpt.load_train_state(path)
    assert train_state["nested"] == {7: (1, 2.5, None), "s": ["a"]}
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(train_state["optimizer"])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k]), (i, k)
    # RNG states travel as uint8 tensors and restore exactly
    assert train_state["rng"]["torch"].dtype == torch.uint8
    set_rng_state(train_state["rng"])
    assert torch.equal(torch.rand(5), model.draws_after_save)
    # the next step of both copies gives bit-identical losses and weights
    assert _step(model, opt, 10) == _step(model2, opt2, 10)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    _, _, path = _trained(tmp_path)

    def forbidden(*a, **k):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    import pickle

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    ckpt.load_model_state(path)
    ckpt.load_train_state(path)


def test_corrupted_truncated_and_missing_files_give_clear_errors(tmp_path):
    _, _, path = _trained(tmp_path)
    weights = path / ckpt.MODEL_FILE
    data = bytearray(weights.read_bytes())

    data[-5] ^= 0xFF  # one flipped bit pattern inside the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="SHA-256 .* corrupted"):
        ckpt.load_model_state(path)
    from worldmodel import load_encoder

    with pytest.raises(ckpt.CheckpointError, match="corrupted"):
        load_encoder(str(path))

    weights.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(ckpt.CheckpointError, match="truncated"):
        ckpt.load_model_state(path)
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupted"):
        ckpt.load_model_state(path, verify=False)  # safetensors itself refuses the file

    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")  # garbage header
    with pytest.raises(ckpt.CheckpointError, match=str(weights)):
        ckpt.load_model_state(path, verify=False)

    (path / ckpt.TRAIN_JSON_FILE).write_text('{"__dict__": {"step": ')
    with pytest.raises(ckpt.CheckpointError, match="train_state.json"):
        ckpt.load_train_state(path)

    (path / ckpt.CONFIG_FILE).write_text(json.dumps({"learner": "gqn"})[:-3])
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        ckpt.read_checkpoint_config(path)
    (path / ckpt.CONFIG_FILE).write_text(json.dumps({"hello": 1}))
    with pytest.raises(ckpt.CheckpointError, match="not a worldmodel checkpoint"):
        ckpt.read_checkpoint_config(path)

    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.read_checkpoint_config(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        ckpt.read_checkpoint_config(tmp_path / "empty")


def test_prune_keeps_the_newest_and_replaces_atomically(tmp_path):
    state = {"w": torch.arange(4.0)}
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(
            tmp_path / "checkpoints" / ckpt.step_dir_name(step), state, {"learner": "x", "model": {}, "step": step}
        )
    (tmp_path / "checkpoints" / ".tmp-step_00000005-deadbeef").mkdir()  # left by a kill mid-write
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000003", "step_00000004"]
    assert ckpt.resolve_checkpoint(tmp_path).name == "step_00000004"
    # rewriting an existing checkpoint replaces it whole
    ckpt.save_checkpoint(
        tmp_path / "checkpoints" / "step_00000004", {"w": torch.ones(2)}, {"learner": "x", "model": {}, "step": 4}
    )
    assert torch.equal(ckpt.load_model_state(tmp_path)[0]["w"], torch.ones(2))
