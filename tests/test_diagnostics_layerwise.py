"""Layer-wise attribution: the layers' shares add up to the end-to-end LEE (exactly for the exact
estimator, within the estimator error for Hutchinson probes); work outside modules is reported."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worldmodel.diagnostics.aliasing import BlurPool2d
from worldmodel.diagnostics.layerwise import layerwise_lee

D = torch.float64


def _net():
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            BlurPool2d(8),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )
        .to(D)
        .eval()
    )


def _images(n=6, size=16):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(2), dtype=D)


def test_exact_shares_sum_to_the_end_to_end_lee():
    res = layerwise_lee(_net(), _images(), "rotate", head="softmax", estimator="exact", progress=False)
    assert res.total == pytest.approx(res.end_to_end, rel=1e-9)
    assert abs(res.unattributed) < 1e-9 * res.end_to_end
    names = [layer.name for layer in res.layers]
    assert names == [str(i) for i in range(11)]  # every leaf module, in call order
    by = {layer.module: layer for layer in res.layers}
    assert by["BatchNorm2d"].local < 1e-20 and by["Linear"].local == 0.0  # pointwise affine / after pooling: exact
    assert by["ReLU"].local > 0  # pointwise non-linearities alias


def test_hutchinson_shares_match_exact_within_their_error():
    net, x = _net(), _images()
    exact = layerwise_lee(net, x, "translate_x", head="softmax", estimator="exact", progress=False)
    hutch = layerwise_lee(net, x, "translate_x", head="softmax", probes=64, seed=3, progress=False)
    assert hutch.end_to_end == pytest.approx(exact.end_to_end, rel=1e-12)
    assert abs(hutch.total - hutch.end_to_end) < 4 * hutch.total_sem + 1e-12
    for e, h in zip(exact.layers, hutch.layers, strict=True):
        assert abs(e.share - h.share) < 4 * h.sem + 1e-9 * exact.end_to_end, e.name


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x))).mean(dim=(2, 3))


def test_work_outside_modules_is_unattributed():
    torch.manual_seed(0)
    res = layerwise_lee(_Functional().to(D).eval(), _images(n=3), "scale", estimator="exact", progress=False)
    assert abs(res.unattributed) > 1e-3 * res.end_to_end  # F.relu and the mean are not modules
    assert res.total + res.unattributed == pytest.approx(res.end_to_end)


def test_layerwise_errors_are_clear():
    net, x = _net(), _images(n=2)
    with pytest.raises(ValueError, match="geometric transform"):
        layerwise_lee(net, x, "brightness", progress=False)
    with pytest.raises(ValueError, match="unknown module name"):
        layerwise_lee(net, x, "rotate", modules=["99"], progress=False)
    with pytest.raises(ValueError, match="valid values: hutchinson, exact"):
        layerwise_lee(net, x, "rotate", estimator="magic", progress=False)
    res = layerwise_lee(net, x, "rotate", modules=["2", "5"], estimator="exact", progress=False)
    assert [layer.name for layer in res.layers] == ["2", "5"]
