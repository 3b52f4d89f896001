"""Domain alignment (worldmodel.align): OT losses against POT's exact EMD, float32 stability,
alignment lowering the paired error on a toy colour shift, no use of target labels or pairs,
adapted-encoder checkpoints, and clear errors for bad input."""

from __future__ import annotations

import agents_fake_env as fake
import numpy as np
import ot
import pytest
import torch

from worldmodel.align.colour import fit_colour_map
from worldmodel.align.fit import AlignConfig, fit_alignment
from worldmodel.align.frames import FrameSet
from worldmodel.align.losses import LOSSES, OT_METHODS, alignment_loss, coral_gram, joint_ot_loss, ot_loss
from worldmodel.align.measures import cloud_distance, paired_feature_error


def _clouds(n=40, m=30, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, d, generator=g, dtype=dtype)
    xt = torch.randn(m, d, generator=g, dtype=dtype) * 0.7 + 0.8
    return xs, xt


def _exact(xs, xt):
    return float(ot.emd2(ot.unif(len(xs)), ot.unif(len(xt)), ot.dist(xs.numpy(), xt.numpy())))


def test_emd_loss_equals_pots_exact_emd():
    xs, xt = _clouds()
    assert float(ot_loss(xs, xt, "emd")) == pytest.approx(_exact(xs, xt), rel=1e-10)


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn-divergence"])
def test_entropic_losses_approach_exact_emd_at_small_regularisation(method):
    xs, xt = _clouds()
    exact = _exact(xs, xt)
    assert float(ot_loss(xs, xt, method, reg=0.01, max_iter=5000)) == pytest.approx(exact, rel=0.03)
    # and a large regularisation is measurably different (the check above can fail)
    if method == "sinkhorn":
        assert abs(float(ot_loss(xs, xt, method, reg=5.0)) - exact) > 0.05 * exact


def test_unbalanced_tends_to_balanced_with_large_marginal_penalty_and_is_zero_on_identical_clouds():
    xs, xt = _clouds()
    balanced = float(ot_loss(xs, xt, "sinkhorn-divergence", reg=0.01))
    assert float(ot_loss(xs, xt, "unbalanced", reg=0.01, reg_m=1e4)) == pytest.approx(balanced, rel=0.05)
    assert float(ot_loss(xs, xt, "unbalanced", reg=0.01, reg_m=0.1)) < 0.7 * balanced  # mass is dropped
    assert abs(float(ot_loss(xs, xs, "unbalanced", reg=0.01))) < 1e-6


@pytest.mark.parametrize("name", LOSSES)
def test_losses_finite_with_finite_gradients_in_float32_at_small_regularisation(name):
    xs, xt = _clouds(64, 64, 32, dtype=torch.float32)
    xs = (xs * 3.0).requires_grad_(True)  # squared distances ~600: reg 1e-3 is 1e-6 of the cost
    kwargs = {"reg": 1e-3} if name in OT_METHODS else {}
    loss = alignment_loss(xs, xt * 3.0, name, **kwargs)
    (grad,) = torch.autograd.grad(loss, xs)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


def test_coral_gram_form_equals_skadas_covariance_form():
    from skada.deep.losses import deepcoral_loss

    xs, xt = _clouds(50, 40, 12)
    assert float(coral_gram(xs, xt)) == pytest.approx(float(deepcoral_loss(xs, xt)), rel=1e-9)


def test_joint_ot_cost_counts_the_outputs():
    xs, xt = _clouds(20, 20, 4)
    head = torch.nn.Linear(4, 2).double()
    plain = float(joint_ot_loss(xs, xt, head, output_weight=0.0))
    assert plain == pytest.approx(_exact(xs, xt), rel=1e-9)
    assert float(joint_ot_loss(xs, xt, head, output_weight=10.0)) > plain


# ------------------------------------------------------------------ toy colour shift


def _toy_frames(n_episodes=24, steps=4, size=16, seed=0, shift=True):
    """Blob scenes; the 'target' domain swaps and darkens the colour channels (a colour shift)."""
    rng = np.random.default_rng(seed)
    frames, states, eps = [], [], []
    yy, xx = np.mgrid[:size, :size]
    for e in range(n_episodes):
        colour = rng.uniform(0.3, 1.0, 3)
        for _ in range(steps):
            cx, cy = rng.uniform(3, size - 3, 2)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0)[..., None]
            img = 0.15 + blob * colour
            frames.append(img)
            states.append([cx, cy, 0, 0, 0, 0])
            eps.append(e)
    sim = np.clip(np.stack(frames) * 255, 0, 255).astype(np.uint8)
    target = np.clip(np.stack(frames)[..., ::-1] * 0.6 * 255 + 40, 0, 255).astype(np.uint8) if shift else sim
    views = np.zeros((len(sim), 5), np.float32)
    st, ep = np.asarray(states, np.float32), np.asarray(eps)
    return FrameSet(sim, views, st, ep), FrameSet(target, views, st, ep, paired=sim)


def _toy_encoder():
    return fake.tiny_encoder(size=16, dim=16, seed=1)


@pytest.mark.parametrize(
    "config",
    [
        AlignConfig(method="ot", loss="sinkhorn", steps=150, batch_size=64, lr=3e-3, adapter_hidden=32),
        AlignConfig(method="ot", loss="emd", steps=150, batch_size=64, lr=3e-3, adapter_hidden=32),
        AlignConfig(method="colour"),
    ],
    ids=["ot-sinkhorn-adapter", "ot-emd-adapter", "colour"],
)
def test_alignment_lowers_the_paired_error_on_a_toy_colour_shift(config):
    torch.manual_seed(0)
    enc = _toy_encoder()
    source, _ = _toy_frames(seed=0)
    _, target_train = _toy_frames(seed=1)
    _, pairs = _toy_frames(seed=2)  # held-out episodes
    before = paired_feature_error(enc, enc, pairs)
    adapted, _ = fit_alignment(enc, source, target_train.without_pairs(), config, progress=False)
    after = paired_feature_error(adapted, enc, pairs)
    assert before > 0.3
    assert after < 0.8 * before, (before, after)
    assert cloud_distance(adapted, enc, pairs) < cloud_distance(enc, enc, pairs)


def test_finetune_mode_lowers_the_paired_error_and_leaves_the_source_encoder_unchanged():
    enc = _toy_encoder()
    state = {k: v.clone() for k, v in enc.model.state_dict().items()}
    source, _ = _toy_frames(seed=0)
    _, target_train = _toy_frames(seed=1)
    _, pairs = _toy_frames(seed=2)
    config = AlignConfig(method="ot", loss="sinkhorn", mode="finetune", steps=80, finetune_batch=32, lr=3e-2)
    adapted, history = fit_alignment(enc, source, target_train, config, progress=False)
    assert paired_feature_error(adapted, enc, pairs) < 0.85 * paired_feature_error(enc, enc, pairs)
    assert all(torch.equal(v, enc.model.state_dict()[k]) for k, v in state.items())
    assert {"align", "anchor", "loss"} <= set(history[-1])


@pytest.mark.parametrize("method", ["ot", "coral", "mmd", "colour", "joint-ot"])
def test_no_method_reads_target_labels_or_pairs(method):
    """Poisoned target states and paired frames give the same adapted encoder as clean ones."""
    enc = _toy_encoder()
    source, _ = _toy_frames(seed=0)
    _, clean = _toy_frames(seed=1)
    poisoned = FrameSet(
        clean.frames,
        clean.viewpoints,
        np.full_like(clean.states, np.nan),
        clean.episodes,
        paired=np.random.default_rng(9).integers(0, 256, clean.frames.shape, dtype=np.uint8),
    )
    source_poisoned = FrameSet(source.frames, source.viewpoints, np.full_like(source.states, np.inf), source.episodes)
    head = torch.nn.Linear(16, 3)
    config = AlignConfig(method=method, steps=5, batch_size=16, adapter_hidden=8)
    a, _ = fit_alignment(enc, source, clean, config, head=head, progress=False)
    b, _ = fit_alignment(enc, source_poisoned, poisoned, config, head=head, progress=False)
    _, pairs = _toy_frames(seed=2)
    assert torch.equal(a.encode(pairs.frames, pairs.viewpoints), b.encode(pairs.frames, pairs.viewpoints))


def test_colour_map_maps_target_palette_onto_source_palette():
    source, target = _toy_frames(seed=0)
    cmap = fit_colour_map(target.frames, source.frames, samples=1500)
    x = torch.as_tensor(target.frames).permute(0, 3, 1, 2).float() / 255
    mapped = cmap(x).permute(0, 2, 3, 1).numpy() * 255
    err_before = np.abs(target.frames.astype(float) - source.frames).mean()
    assert np.abs(mapped - source.frames).mean() < 0.5 * err_before


def test_adapted_encoder_round_trips_through_its_checkpoint(tmp_path):
    from worldmodel.align.encoder import save_aligned
    from worldmodel.encoders import load_encoder

    ckpt = fake.save_tiny_gqn(tmp_path / "gqn", size=16)
    base = load_encoder(str(ckpt))
    source, target = _toy_frames(seed=0)
    config = AlignConfig(method="ot", steps=5, batch_size=16, adapter_hidden=8, lr=1e-2)
    adapted, _ = fit_alignment(base, source, target, config, progress=False)
    save_aligned(tmp_path / "aligned", ckpt, "ot-sinkhorn", {"steps": 5}, adapter=adapted.model.adapter)
    loaded = load_encoder(str(tmp_path / "aligned"))
    x, v = target.frames[:6], target.viewpoints[:6]
    assert torch.allclose(loaded.encode(x, v), adapted.encode(x, v), atol=1e-6)
    assert not torch.allclose(loaded.encode(x, v), base.encode(x, v))
    (tmp_path / "gqn" / "model.safetensors").write_bytes(b"corrupted")  # the base changed: refused
    with pytest.raises(Exception, match="SHA-256"):
        load_encoder(str(tmp_path / "aligned"))


# ------------------------------------------------------------------ bad input


def test_mismatched_feature_dims_are_refused_with_both_sizes():
    with pytest.raises(ValueError, match="sizes differ: 4 vs 5"):
        alignment_loss(torch.zeros(3, 4), torch.zeros(3, 5), "emd")


def test_empty_target_set_is_refused():
    with pytest.raises(ValueError, match="target feature set is empty"):
        ot_loss(torch.zeros(3, 4), torch.zeros(0, 4), "sinkhorn")
    with pytest.raises(ValueError, match="at least one frame"):
        FrameSet(np.zeros((0, 16, 16, 3), np.uint8), np.zeros((0, 5)), np.zeros((0, 6)), np.zeros(0, int))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "magic"}, "unknown method 'magic'; valid values: 'none', 'ot'"),
        ({"loss": "wasserstein"}, "unknown loss 'wasserstein'; valid values: 'emd', 'sinkhorn'"),
        ({"mode": "lora"}, "unknown mode 'lora'; valid values: 'adapter', 'finetune'"),
    ],
)
def test_unknown_method_loss_or_mode_names_the_valid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlignConfig(**kwargs)
    with pytest.raises(ValueError, match="valid values: 'emd'"):
        alignment_loss(torch.zeros(2, 2), torch.zeros(2, 2), "kl")


def test_joint_ot_without_a_head_and_wrong_frame_size_are_refused():
    enc = _toy_encoder()
    source, target = _toy_frames(seed=0)
    with pytest.raises(ValueError, match="joint-ot' needs the source model's head"):
        fit_alignment(enc, source, target, AlignConfig(method="joint-ot"), progress=False)
    small = FrameSet(source.frames[:, :8, :8], source.viewpoints, source.states, source.episodes)
    with pytest.raises(ValueError, match="encoder expects 16x16"):
        fit_alignment(enc, source, small, AlignConfig(), progress=False)


def test_colour_first_composes_the_colour_map_and_the_adapter(tmp_path):
    from worldmodel.align.encoder import save_aligned
    from worldmodel.encoders import load_encoder

    ckpt = fake.save_tiny_gqn(tmp_path / "gqn", size=16)
    base = load_encoder(str(ckpt))
    source, _ = _toy_frames(seed=0)
    _, target = _toy_frames(seed=1)
    _, pairs = _toy_frames(seed=2)
    config = AlignConfig(method="ot", colour_first=True, steps=30, batch_size=32, adapter_hidden=8, lr=3e-3)
    toy = _toy_encoder()
    on_toy, _ = fit_alignment(toy, source, target.without_pairs(), config, progress=False)
    colour_only, _ = fit_alignment(toy, source, target.without_pairs(), AlignConfig(method="colour"), progress=False)
    # measured: 3.09 unadapted, 1.08 colour alone, 0.67 colour then OT
    assert paired_feature_error(on_toy, toy, pairs) < 0.8 * paired_feature_error(colour_only, toy, pairs)
    adapted, _ = fit_alignment(base, source, target.without_pairs(), config, progress=False)
    model = adapted.model
    assert model.colour_map is not None and model.adapter is not None and adapted.name.endswith("colour+ot-sinkhorn")
    save_aligned(tmp_path / "a", ckpt, "colour+ot", {}, adapter=model.adapter, colour_map=model.colour_map)
    loaded = load_encoder(str(tmp_path / "a"))
    x, v = pairs.frames[:5], pairs.viewpoints[:5]
    assert torch.allclose(loaded.encode(x, v), adapted.encode(x, v), atol=1e-6)


def test_finetune_with_a_gqns_own_loss_on_source_scenes(tmp_path):
    from worldmodel.encoders import load_encoder
    from worldmodel.train.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", scenes=20, views=5, size=16)
    base = load_encoder(str(fake.save_tiny_gqn(tmp_path / "gqn", size=16)))
    source, target = _toy_frames(seed=0)
    config = AlignConfig(method="ot", mode="finetune", source_loss="learner", steps=3, finetune_batch=8)
    adapted, history = fit_alignment(base, source, target, config, source_data=str(data), progress=False)
    assert len(history) == 3 and all(np.isfinite(h["learner"]) for h in history)
    assert not torch.allclose(
        adapted.encode(target.frames[:4], target.viewpoints[:4]), base.encode(target.frames[:4], target.viewpoints[:4])
    )
    with pytest.raises(ValueError, match="needs a learner with source_loss"):
        fit_alignment(base, source, target, config, progress=False)  # no dataset for the GQN's loss
