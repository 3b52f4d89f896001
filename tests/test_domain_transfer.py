"""Target domains for sim-to-real studies (``real``, ``real-hard``) and paired rendering: the
same physical state rendered in two domains, with observations and random draws unchanged."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.domain import DOMAIN_CHOICES, DOMAINS, Domain, episode_appearance, gaussian_blur, target_contrast

V1 = "wm/JacoReach-v1"


def _make(**kw):
    return gym.make(V1, camera="moving", size=32, target_marker=True, **kw)


def _rollout(env, seed=5, steps=4):
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(steps):
        obs, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        out.append((obs, info))
    return out


def test_real_hard_preset_is_listed_and_documented_values_hold():
    assert {"sim", "real", "real-hard", "randomised"} <= set(DOMAIN_CHOICES)
    hard = DOMAINS["real-hard"]
    assert hard.fovy_jitter_deg > 0 and hard.blur_sigma > 0 and hard.distractor_colours
    assert hard.pixel_noise_std > DOMAINS["real"].pixel_noise_std


def test_episode_appearance_is_deterministic_keeps_target_contrast_and_jitters_fov():
    hard = DOMAINS["real-hard"]
    a = episode_appearance(hard, np.random.default_rng(1))
    assert a == episode_appearance(hard, np.random.default_rng(1))
    draws = [episode_appearance(hard, np.random.default_rng(s)) for s in range(30)]
    assert len({d.floor_rgb for d, _ in draws}) == 30
    assert all(target_contrast(d.target_rgb, d.floor_rgb, d.floor_texture) >= 40 for d, _ in draws)
    offsets = np.array([o for _, o in draws])
    assert np.all(np.abs(offsets) <= hard.fovy_jitter_deg) and offsets.std() > 2
    plain = DOMAINS["real"]
    assert episode_appearance(plain, np.random.default_rng(1)) == (plain, 0.0)


def test_gaussian_blur_smooths_and_is_identity_at_zero():
    img = np.zeros((16, 16, 3), np.uint8)
    img[::2] = 255  # stripes: all high frequency
    assert gaussian_blur(img, 0.0) is img
    out = gaussian_blur(img, 1.0)
    assert out.shape == img.shape and out.dtype == np.uint8 and out.std() < 0.2 * img.std()


def test_real_hard_episodes_are_deterministic_per_seed_and_differ_across_seeds():
    a, b = _make(domain="real-hard"), _make(domain="real-hard")
    (oa, ia), (ob, ib) = a.reset(seed=3), b.reset(seed=3)
    assert np.array_equal(oa, ob) and ia["domain"] == ib["domain"]
    oc, ic = a.reset(seed=4)
    assert ic["domain"]["floor_rgb"] != ia["domain"]["floor_rgb"]
    assert a.unwrapped.model.vis.global_.fovy != pytest.approx(45.0)


def test_paired_rendering_leaves_observations_and_rewards_unchanged():
    plain = _rollout(_make())
    paired = _rollout(_make(paired_domain="real-hard"))
    for (o1, i1), (o2, i2) in zip(plain, paired):
        assert np.array_equal(o1, o2) and i1["distance"] == i2["distance"]
        assert "paired_pixels" in i2 and "paired_pixels" not in i1
        assert i2["paired_pixels"].shape == o2.shape and not np.array_equal(i2["paired_pixels"], o2)


def test_paired_frame_is_the_target_domain_rendering_of_the_same_state():
    # A noise-free target domain, so the two renderings can be compared pixel for pixel.
    clean_real = replace(DOMAINS["real"], pixel_noise_std=0.0)
    direct = _rollout(_make(domain=clean_real))
    paired = _rollout(_make(paired_domain=clean_real))
    for (o_direct, _), (_, info) in zip(direct, paired):
        assert np.abs(o_direct.astype(int) - info["paired_pixels"].astype(int)).max() <= 1
    # and the sim observation of that state is different (the check above can fail)
    assert np.abs(paired[0][0].astype(int) - paired[0][1]["paired_pixels"].astype(int)).mean() > 10


def test_paired_view_survives_pickling():
    import pickle

    env = _make(paired_domain="real")
    env.reset(seed=0)
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    _, info = clone.reset(seed=0)
    assert info["paired_pixels"].shape == (32, 32, 3)


@pytest.mark.parametrize("kw", [{"domain": "mars"}, {"paired_domain": "moon"}])
def test_unknown_domain_names_the_valid_values(kw):
    with pytest.raises(ValueError, match="'sim', 'real', 'real-hard', 'randomised'"):
        _make(**kw)


def test_domain_rejects_bad_camera_fields():
    with pytest.raises(ValueError, match="blur_sigma must be >= 0"):
        Domain(blur_sigma=-1)
    with pytest.raises(ValueError, match="fovy_jitter_deg must be < 30"):
        Domain(fovy_jitter_deg=40)
