"""The raw-pixel reference of the homNIST protocol reads the same warped test set as the heads."""

from __future__ import annotations

import pytest

from worldmodel.data.homnist import HomnistSamplerConfig, build_homnist_test_set, save_homnist_mat
from worldmodel.data.homography import load_digit_images
from worldmodel.eval.homnist_pixels import pixel_baseline


def test_pixel_baseline_classifies_clean_digits_and_loses_accuracy_under_warps():
    res = pixel_baseline(max_train=600, max_test_digits=60, warps=4, max_iter=300)
    assert res["warped_images"] == 60 * 4
    assert res["clean_accuracy"] > 0.8  # raw pixels do classify clean digits
    assert res["warped_accuracy"] < res["clean_accuracy"] - 0.2  # but not warped ones: no invariance
    assert res["test_set"]["kind"] == "generated" and res["test_set"]["sampler"]["scale"] == 1.0


def test_pixel_baseline_on_a_mat_file_equals_the_generated_set_it_was_written_from(tmp_path):
    test_x, test_y = load_digit_images("digits", "test", 40)
    images, labels, _ = build_homnist_test_set(test_x[:30], test_y[:30], warps=3, seed=7, config=HomnistSamplerConfig())
    path = save_homnist_mat(tmp_path / "homNIST_test.mat", images, labels)
    kwargs = dict(max_train=400, max_test_digits=30, warps=3, test_seed=7, max_iter=200)
    from_mat = pixel_baseline(mat_path=str(path), **kwargs)
    generated = pixel_baseline(**kwargs)
    assert from_mat["warped_images"] == generated["warped_images"] == 90
    assert from_mat["warped_accuracy"] == pytest.approx(generated["warped_accuracy"], abs=1 / 90 + 1e-9)
    with pytest.raises(ValueError, match="expected 32x32"):
        pixel_baseline(mat_path=str(path), size=32, **kwargs)


def test_wm_eval_niso_hmnist_writes_a_row_per_checkpoint_and_the_pixel_row(tmp_path):
    import json

    from agents.cli import main
    from worldmodel.checkpoint import save_checkpoint
    from worldmodel.models.niso import build_niso

    model = build_niso("tiny", image_size=40)
    cfg = {f: getattr(model.config, f) for f in model.config.__dataclass_fields__}
    cfg["channels"], cfg["skips"] = list(cfg["channels"]), list(cfg["skips"])
    save_checkpoint(tmp_path / "niso", model.state_dict(), {"learner": "niso", "model": cfg, "step": 0})
    out = tmp_path / "hmnist.json"
    argv = ["eval", "niso", "hmnist", f"mine={tmp_path / 'niso'}", "--steps", "5", "--warmup-steps", "2"]
    argv += ["--max-train", "64", "--max-test-digits", "8", "--warps", "2", "--pixels", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["name"] for r in rows] == ["mine", "raw pixels (logistic)"]
    assert all(r["warped_images"] == 16 for r in rows)
    assert rows[0]["config"]["steps"] == 5 and rows[0]["protocol"] == "hmnist_pred"
    with pytest.raises(SystemExit):
        main(["eval", "niso", "hmnist", str(tmp_path / "niso"), "--head", "mlp"])
