"""scripts/niso_study.py's aggregation: per-arm CIs over seeds, paired differences, the verdicts, the picture."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "niso_study.py"


def _study():
    spec = importlib.util.spec_from_file_location("niso_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_results(out: Path, warped: dict[str, list[float]], pixels: float = 0.40) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "pixels_hmnist.json").write_text(json.dumps({"warped_accuracy": pixels, "clean_accuracy": 0.98}))
    for arm, values in warped.items():
        for seed, w in enumerate(values):
            row = {
                "warped_accuracy": w,
                "clean_accuracy": 0.95,
                "train_accuracy": 0.99,
                "step": 0 if arm == "untrained" else 3000,
                "config": {"steps": 3000},
                "warped_images": 11488,
            }
            (out / f"{arm}_s{seed}_hmnist.json").write_text(json.dumps({"results": [row]}))


def _args(out: Path, seeds: list[int]) -> argparse.Namespace:
    return argparse.Namespace(out=out, seeds=seeds, train_steps=3000, head_steps=3000, head_warmup=300)


def test_aggregate_orders_the_arms_and_checks_the_pixel_target(tmp_path):
    study = _study()
    warped = {
        "niso": [0.60, 0.62, 0.61],
        "ae_aug": [0.50, 0.52, 0.49],
        "niso_no_lm": [0.45, 0.44, 0.46],
        "untrained": [0.30, 0.31, 0.29],
    }
    _write_results(tmp_path, warped)
    summary = study.aggregate(_args(tmp_path, [0, 1, 2]))
    niso = summary["arms"]["niso"]
    assert niso["warped_mean"] == pytest.approx(61.0)
    assert niso["warped_ci95"][0] <= 61.0 <= niso["warped_ci95"][1]
    assert summary["paired_differences"]["niso - ae_aug"]["per_seed"] == pytest.approx([10.0, 10.0, 12.0])
    assert summary["verdict"]["ordering_niso_gt_ae_gt_no_lm"] is True
    assert summary["verdict"]["niso_15_points_above_pixels"] is True  # 61 - 40 >= 15 at the CI's low end
    assert summary["train_steps"] == [3000] and summary["head_steps"] == [3000]
    table = study.markdown(summary)
    assert "| NISO | 61.0% [" in table and "| niso - ae_aug | +10.7 [" in table
    study.plot(summary, tmp_path / "fig" / "study.png")
    assert (tmp_path / "fig" / "study.png").stat().st_size > 10_000


def test_aggregate_says_no_when_the_ordering_or_the_margin_fails(tmp_path):
    study = _study()
    _write_results(
        tmp_path,
        {"niso": [0.46, 0.47, 0.45], "ae_aug": [0.48, 0.44, 0.47], "niso_no_lm": [0.50, 0.49, 0.51]},
    )
    summary = study.aggregate(_args(tmp_path, [0, 1, 2]))
    assert summary["verdict"]["ordering_niso_gt_ae_gt_no_lm"] is False
    assert summary["verdict"]["niso_15_points_above_pixels"] is False
    assert summary["verdict"]["niso_minus_pixels"] == pytest.approx(6.0)
    assert "untrained" not in summary["arms"]  # arms without results are left out, not invented


def test_evaluate_and_train_skip_finished_work(tmp_path, monkeypatch):
    study = _study()
    args = argparse.Namespace(out=tmp_path, train_steps=5, head_steps=3, head_warmup=1, ckpt_every=5)
    (tmp_path / "niso_s0_hmnist.json").write_text("{}")
    monkeypatch.setattr(study, "_run", lambda cmd, log: pytest.fail(f"ran {cmd}"))
    assert study.evaluate("niso", 0, tmp_path / "niso_s0", args) == tmp_path / "niso_s0_hmnist.json"
    monkeypatch.setattr(study, "_trained_step", lambda run: 5)
    assert study.train("niso", 0, args) == tmp_path / "niso_s0"
