"""NISO's official protocols: homNIST test sampler and .mat loader, hmnist_pred classification, equivariance forms,
trajectory ATE / RPE, the capacity-matched autoencoder and the input range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat
from scipy.spatial.transform import Rotation

from worldmodel.checkpoint import save_checkpoint
from worldmodel.data.homnist import (
    DEFAULT_WALK_STEPS,
    HomnistSamplerConfig,
    build_homnist_test_set,
    homnist_test_homographies,
    iter_homnist_test_set,
    load_homnist_mat,
    metropolis_coefficients,
    save_homnist_mat,
)
from worldmodel.data.homography import HOMOGRAPHY_SIGMAS, load_digit_images, warp
from worldmodel.eval.niso_protocol import (
    ClassificationProtocolConfig,
    GramHead,
    OrthInvariantHead,
    OrthNeuron,
    equivariance_errors,
    equivariance_protocol,
    homnist_classification,
    train_protocol_classifier,
    warmup_cosine_lr,
)
from worldmodel.eval.pose_trajectory import (
    ate,
    chain_relative_poses,
    relative_poses,
    rpe,
    scale_invariant_translation_loss,
    sequence_ate,
    trajectory_metrics,
    umeyama_alignment,
)
from worldmodel.models.niso import build_niso, load_niso

# ----------------------------------------------------------------------------- homNIST test sampler


def test_homnist_walk_per_coefficient_std_is_about_0p7_sigma():
    gen = torch.Generator().manual_seed(0)
    c = metropolis_coefficients(100_000, generator=gen)
    ratio = c.std(0) / torch.tensor(HOMOGRAPHY_SIGMAS, dtype=torch.float64)
    # measured: 0.70 (each coefficient 0.69..0.71) with the default 5 steps
    assert DEFAULT_WALK_STEPS == 5
    assert 0.68 < float(ratio.mean()) < 0.72, ratio
    assert float(ratio.min()) > 0.67 and float(ratio.max()) < 0.73, ratio
    assert abs(float(c.mean(0).abs().max())) < 0.01
    # zero steps: the start itself (0.5 s); the model's sigma_scale scales everything
    start = metropolis_coefficients(100_000, HomnistSamplerConfig(steps=0), generator=gen)
    assert 0.49 < float((start.std(0) / torch.tensor(HOMOGRAPHY_SIGMAS, dtype=torch.float64)).mean()) < 0.51
    half = metropolis_coefficients(100_000, HomnistSamplerConfig(scale=0.5), generator=gen)
    assert 0.34 < float((half.std(0) / torch.tensor(HOMOGRAPHY_SIGMAS, dtype=torch.float64)).mean()) < 0.36
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        HomnistSamplerConfig(steps=-1)


def test_homnist_walk_is_the_identity_with_zero_steps_and_zero_start():
    cfg = HomnistSamplerConfig(steps=0, init_scale=0.0)
    hom = homnist_test_homographies(4, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(hom, torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    images, labels = load_digit_images("digits", "test", 16)
    x = images[:3].float() / 255.0
    torch.testing.assert_close(warp(x, hom[:3]), x, atol=1e-5, rtol=0)
    batch = next(iter_homnist_test_set(images[:3], labels[:3], warps=2, config=cfg))
    torch.testing.assert_close(batch["image"], images[:3].repeat_interleave(2, 0))


def test_homnist_test_set_warps_every_digit_32_times_deterministically():
    images, labels = load_digit_images("digits", "test", 16)
    images, labels = images[:5], labels[:5]
    x, y, digit = build_homnist_test_set(images, labels, seed=3)
    assert x.shape == (5 * 32, 1, 16, 16) and x.dtype == torch.uint8
    torch.testing.assert_close(y, labels.repeat_interleave(32))
    torch.testing.assert_close(digit, torch.arange(5).repeat_interleave(32))
    assert not torch.equal(x[0], x[1])  # different warps of the same digit
    again = torch.cat([b["image"] for b in iter_homnist_test_set(images, labels, seed=3, digits_per_batch=2)])
    torch.testing.assert_close(again, x)  # independent of the batching


# ----------------------------------------------------------------------------- .mat loader


def test_homnist_mat_loader_reads_a_small_file(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 40, 40)).astype(np.float32) / 255.0
    labels = np.array([[3, 1, 4, 1, 5, 9]], dtype=np.uint8)  # MATLAB-style [1, n] row
    path = tmp_path / "homNIST_test.mat"
    savemat(str(path), {"img_data": pixels, "labels": labels})
    images, lab = load_homnist_mat(path)
    assert images.shape == (6, 1, 40, 40) and images.dtype == torch.uint8
    np.testing.assert_array_equal(images[:, 0].numpy(), np.round(pixels * 255).astype(np.uint8))
    assert lab.tolist() == [3, 1, 4, 1, 5, 9] and lab.dtype == torch.int64
    # our writer round-trips
    out = save_homnist_mat(tmp_path / "ours.mat", images, lab)
    back, back_lab = load_homnist_mat(out)
    torch.testing.assert_close(back, images)
    torch.testing.assert_close(back_lab, lab)
    savemat(str(tmp_path / "bad.mat"), {"images": pixels})
    with pytest.raises(ValueError, match="missing key.*img_data.*the file holds images"):
        load_homnist_mat(tmp_path / "bad.mat")


# ----------------------------------------------------------------------------- heads and hmnist_pred


def _random_orthogonal(k: int, seed: int, flip: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    if flip:  # an improper one too: the heads are O(k)-invariant, not only SO(k)
        q[:, 0] = -q[:, 0]
    return q.float()


def test_orth_head_is_invariant_to_orthogonal_transforms_of_its_input():
    torch.manual_seed(0)
    k, d = 12, 8
    a = torch.randn(5, k, d)
    head = OrthInvariantHead(d, 10, features=16, layers=2, inter_features=8).eval()
    gram = GramHead(d, 10, hidden=32).eval()
    neuron = OrthNeuron(d, 6)
    for seed, flip in ((1, False), (2, True)):
        q = _random_orthogonal(k, seed, flip)
        with torch.no_grad():
            torch.testing.assert_close(head(q @ a), head(a), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(gram(q @ a), gram(a), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(neuron(q @ a), q @ neuron(a), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(head(a), head(a.flip(-1)))  # not trivially constant


def test_warmup_cosine_schedule_matches_optax_endpoints():
    args = dict(init=1e-8, peak=5e-4, warmup=2000, decay_steps=1_000_000, end=5e-5)
    assert warmup_cosine_lr(0, **args) == pytest.approx(1e-8)
    assert warmup_cosine_lr(1000, **args) == pytest.approx((1e-8 + 5e-4) / 2)
    assert warmup_cosine_lr(2000, **args) == pytest.approx(5e-4)
    assert warmup_cosine_lr(20_000, **args) == pytest.approx(5e-4, rel=1e-3)  # barely decayed
    assert warmup_cosine_lr(1_000_000, **args) == pytest.approx(5e-5)
    assert warmup_cosine_lr(2_000_000, **args) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="unknown head 'mlp'; valid values: 'orth', 'gram'"):
        ClassificationProtocolConfig(head="mlp")


def test_hmnist_pred_trains_phi_and_m_but_not_the_encoder():
    torch.manual_seed(0)
    model = build_niso("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = load_digit_images("digits", "train", 16)
    cfg = ClassificationProtocolConfig(
        steps=30, warmup_steps=5, decay_steps=100, lr=3e-3, head_features=16, inter_features=8
    )
    clf = train_protocol_classifier(model, images[:256], labels[:256], cfg, progress=False)
    names = {n.split(".")[0] for n, p in clf.named_parameters() if p.requires_grad}
    assert names == {"basis", "head"}  # the encoder is not among the trained parameters
    for key, value in model.state_dict().items():  # the model itself is unchanged
        torch.testing.assert_close(value, before[key], msg=key)
    moved = clf.basis.basis_free.detach() - model.operator.basis_free.detach()
    assert float(moved.abs().max()) > 0  # Phi (and M) were trained, on a copy
    assert float((clf.basis.mass_root - model.operator.mass_root).detach().abs().max()) > 0
    res = homnist_classification(
        model,
        config=ClassificationProtocolConfig(steps=3, head="gram", gram_hidden=16, warmup_steps=1, decay_steps=10),
        warps=4,
        max_train=64,
        max_test_digits=5,
        progress=False,
    )
    assert res["warped_images"] == 20 and res["test_digits"] == 5 and res["train_digits"] == 64
    assert res["test_set"]["kind"] == "generated" and res["test_set"]["sampler"]["scale"] == 1.0
    assert 0.0 <= res["warped_accuracy"] <= 1.0 and 0.0 <= res["clean_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="a plain autoencoder has no basis"):
        train_protocol_classifier(build_niso("tiny", mode="autoencoder"), images[:8], labels[:8], cfg)
    # training reads cached frozen grids: the logits on them are those of the frames themselves
    torch.testing.assert_close(clf.forward_grid(clf.frozen_grid(images[:8])), clf(images[:8]))


# ----------------------------------------------------------------------------- equivariance error


def test_equivariance_error_forms():
    torch.manual_seed(0)
    a = torch.randn(3, 6, 4)
    q = _random_orthogonal(6, 0, False).expand(3, 6, 6)
    exact = equivariance_errors(q, a, q @ a)
    assert float(exact["squared"].max()) < 1e-10 and float(exact["relative"].max()) < 1e-5
    b = torch.randn(3, 6, 4)
    errs = equivariance_errors(q, a, b)
    want = (q @ a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)
    torch.testing.assert_close(errs["relative"], want)
    torch.testing.assert_close(errs["squared"], want.square())
    model = build_niso("tiny")
    res = equivariance_protocol(model, pairs=9, batch_size=4)
    for part in ("tau", "identity"):
        s = res[part]
        assert s["relative_median"] == pytest.approx(s["squared_median"] ** 0.5, rel=1e-5)
        assert s["relative_mean"] ** 2 <= s["squared_mean"] + 1e-9  # Jensen
    assert res["sigma_scale"] == 1.0 and res["sampler"] == "train"
    assert equivariance_protocol(model, pairs=4, sampler="homnist")["sampler"] == "homnist"


# ----------------------------------------------------------------------------- trajectories


def _trajectory(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.1, (n, 3)), 0)).as_matrix()
    poses[:, :3, 3] = np.cumsum(rng.normal(0, 0.3, (n, 3)), 0)
    return poses


def test_procrustes_ate_is_zero_for_a_similarity_transformed_trajectory():
    true = _trajectory(30, 0)
    rot = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    pred_pos = 2.5 * true[:, :3, 3] @ rot.T + np.array([1.0, -4.0, 0.5])
    sim = umeyama_alignment(pred_pos, true[:, :3, 3])
    assert sim.scale == pytest.approx(1 / 2.5) and np.linalg.det(sim.rotation) == pytest.approx(1.0)
    assert ate(pred_pos, true[:, :3, 3]) < 1e-9
    assert ate(pred_pos, true[:, :3, 3], method="scipy") < 1e-9
    # chained relative poses of a trajectory that differs by a similarity (rotation, scale, offset)
    moved = true.copy()
    moved[:, :3, :3] = rot @ true[:, :3, :3]
    moved[:, :3, 3] = pred_pos
    assert sequence_ate(relative_poses(moved), true) < 1e-9
    np.testing.assert_allclose(chain_relative_poses(relative_poses(true), true[0]), true, atol=1e-9)
    noisy = pred_pos + np.random.default_rng(1).normal(0, 0.5, pred_pos.shape)
    assert ate(noisy, true[:, :3, 3]) > 0.05


def test_rpe_per_skip_and_the_scale_invariant_loss():
    seqs = [_trajectory(25, s) for s in range(3)]

    def scaled_truth(i, idx):  # right directions, translations twice too long
        rel = relative_poses(seqs[i][idx])
        rel[:, :3, 3] *= 2.0
        return rel

    out = trajectory_metrics(scaled_truth, seqs, skips=(1, 2, 4), max_frames=None)
    assert set(out) == {"1", "2", "4"} and all(out[k]["sequences"] == 3 for k in out)
    for k in out:
        assert out[k]["ate"] < 1e-9  # a scale error is aligned away ...
        assert out[k]["rpe_translation"] > 0.1  # ... but the RPE sees it
        assert out[k]["rpe_rot_deg"] < 1e-6
    rng = np.random.default_rng(3)

    def noisy(i, idx):  # each sequence its own error, so the pooling has something to pool
        rel = relative_poses(seqs[i][idx])
        rel[:, :3, 3] += rng.normal(0, 0.1 * (i + 1), rel[:, :3, 3].shape)
        return rel

    per = trajectory_metrics(noisy, seqs, skips=(2,), max_frames=None, per_sequence=True)["2"]
    assert len(per["per_sequence_ate"]) == 3 and per["per_sequence_ate"][2] > per["per_sequence_ate"][0]
    assert per["ate"] == pytest.approx(float(np.sqrt(np.mean(np.square(per["per_sequence_ate"])))))
    rel = relative_poses(seqs[0])
    assert rpe(rel, rel) == {"translation": 0.0, "rot_deg": pytest.approx(0.0, abs=1e-6)}
    true = torch.randn(4, 3, 3)
    pred = (0.3 * true).requires_grad_()
    loss = scale_invariant_translation_loss(pred, true)
    assert float(loss.detach()) < 1e-6
    worse = scale_invariant_translation_loss(torch.randn(4, 3, 3, requires_grad=True), true)
    assert float(worse.detach()) > 0.1
    worse.backward()
    with pytest.raises(ValueError, match=r"\[\.\.\., n, 3\]"):
        scale_invariant_translation_loss(torch.randn(4, 2), torch.randn(4, 2))


# ----------------------------------------------------------------------------- model options


def test_capacity_matched_autoencoder_has_a_rank_k_bottleneck():
    torch.manual_seed(0)
    ae = build_niso("tiny", mode="autoencoder", ae_bottleneck=True, rank=4)
    assert ae.operator is None and ae.bottleneck is not None
    assert ae.feature_dim("latent") == 4 * 8 == ae.features(torch.rand(2, 1, 16, 16)).shape[1]
    x = ae.prepare_images(torch.rand(3, 1, 16, 16))
    z = ae.grid(x)
    phi, mass = ae.basis()
    assert phi.shape == (64, 4)
    decoder_input = phi @ (phi.T @ (mass[:, None] * z))  # what reconstruct_grid decodes
    assert all(int(torch.linalg.matrix_rank(m)) <= 4 for m in decoder_input.detach())
    torch.testing.assert_close(ae.reconstruct_grid(z), ae.decode_grid(decoder_input))
    batch = {"frame_a": torch.rand(2, 1, 16, 16), "frame_b": torch.rand(2, 1, 16, 16)}
    out = ae.loss(batch)
    assert set(out) == {"loss", "recon"}
    out["loss"].backward()
    assert ae.bottleneck.basis_free.grad is not None and torch.isfinite(ae.bottleneck.basis_free.grad).all()
    plain = build_niso("tiny", mode="autoencoder")
    assert plain.bottleneck is None and plain.feature_dim("latent") == 64 * 8
    with pytest.raises(ValueError, match="ae_bottleneck=True needs mode='autoencoder'"):
        build_niso("tiny", ae_bottleneck=True)


def test_input_range_defaults_to_official_and_old_checkpoints_load_as_unit_range(tmp_path):
    model = build_niso("tiny")
    assert model.config.input_range == "[-1,1]"
    frames = torch.zeros(1, 16, 16, 1, dtype=torch.uint8)
    frames[:, :, 8:] = 255
    x = model.prepare_images(frames)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert float(build_niso("tiny", input_range="[0,1]").prepare_images(frames).min()) == 0.0
    with pytest.raises(ValueError, match="input_range"):
        build_niso("tiny", input_range="[0,255]")
    cfg = {f: getattr(model.config, f) for f in model.config.__dataclass_fields__}
    cfg["channels"], cfg["skips"] = list(cfg["channels"]), list(cfg["skips"])
    del cfg["input_range"], cfg["ae_bottleneck"]  # a checkpoint written before the options existed
    save_checkpoint(tmp_path / "old", model.state_dict(), {"learner": "niso", "model": cfg, "step": 0})
    old, _ = load_niso(tmp_path / "old")
    assert old.config.input_range == "[0,1]" and not old.config.ae_bottleneck
