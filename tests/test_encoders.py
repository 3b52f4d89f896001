"""FrozenEncoder input handling and freezing (independent of any particular learner)."""

import numpy as np
import pytest
import torch
from torch import nn

from envs.camera import viewpoint7
from worldmodel.encoders import FrozenEncoder, viewpoint7_torch


class _Probe(nn.Module):
    """Features = per-channel image means and the viewpoint, so inputs are easy to check."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.drop = nn.Dropout(0.5)

    def encode(self, frames, viewpoints):
        return self.drop(torch.cat([frames.mean(dim=(2, 3)) * self.scale, viewpoints], dim=1))


def _encoder() -> FrozenEncoder:
    return FrozenEncoder(_Probe(), feature_dim=10, image_size=8, name="probe")


def test_frozen_from_construction_and_stays_frozen():
    enc = _encoder()
    assert not enc.training and not enc.model.training
    enc.train()
    assert not enc.training and not enc.model.training  # dropout stays off
    assert all(not p.requires_grad for p in enc.parameters())


def test_uint8_hwc_and_float_chw_agree_and_viewpoint_forms_agree():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    v5 = rng.normal(size=(3, 5)).astype(np.float32)
    enc = _encoder()
    a = enc.encode_numpy(frames, v5)
    b = enc.encode_numpy(torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255.0, viewpoint7(v5))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.shape == (3, 10) and a.dtype == np.float32
    np.testing.assert_allclose(a[:, :3], frames.mean(axis=(1, 2)) / 255.0, atol=1e-5)
    np.testing.assert_allclose(viewpoint7_torch(torch.as_tensor(v5)).numpy(), viewpoint7(v5), atol=1e-6)


def test_bad_inputs_name_the_problem():
    enc = _encoder()
    with pytest.raises(ValueError, match="8x8"):
        enc.encode(np.zeros((1, 16, 16, 3), np.uint8), np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[B,5\] or \[B,7\]"):
        enc.encode(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="needs viewpoints"):
        enc.encode(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="batch"):
        enc.encode(np.zeros((8, 8, 3), np.uint8), np.zeros((1, 5), np.float32))
