"""Homography digits: sl(3) sampler, batched warp, IDX reader and the pair loader."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from worldmodel.data.homography import (
    HOMOGRAPHY_SIGMAS,
    SL3_BASIS,
    HomographyPairConfig,
    HomographyPairLoader,
    homography_matrices,
    is_digit_source,
    load_digit_images,
    load_mnist,
    read_idx,
    sample_coefficients,
    sample_homographies,
    warp,
    warped_test_set,
)


def test_sl3_basis_is_traceless_and_spans_eight_dimensions():
    assert SL3_BASIS.shape == (8, 3, 3)
    torch.testing.assert_close(torch.diagonal(SL3_BASIS, dim1=1, dim2=2).sum(-1), torch.zeros(8, dtype=torch.float64))
    assert torch.linalg.matrix_rank(SL3_BASIS.reshape(8, 9)) == 8
    hom = sample_homographies(64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.linalg.det(hom), torch.ones(64, dtype=torch.float64))  # det expm(X) = e^tr X = 1


def test_coefficients_follow_the_homnist_sigmas():
    c = sample_coefficients(40_000, torch.Generator().manual_seed(1))
    np.testing.assert_allclose(c.std(0).numpy(), HOMOGRAPHY_SIGMAS, rtol=0.03)
    with pytest.raises(ValueError, match="8 values"):
        sample_coefficients(3, sigmas=(0.1, 0.2))


def test_warp_is_identity_at_zero_coefficients_and_moves_images_otherwise():
    images, _ = load_digit_images("digits", "train", size=20)
    x = images[:6].float() / 255.0
    same = warp(x, homography_matrices(torch.zeros(6, 8)))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    moved = warp(x, sample_homographies(6, torch.Generator().manual_seed(2)))
    assert float((moved - x).abs().mean()) > 0.02


def test_translation_generator_shifts_the_image_by_the_expected_pixels():
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1.0
    c = torch.zeros(1, 8)
    c[0, 2] = 0.2  # translate-x by 0.2 in [-1, 1] units = 2 pixels (20 pixels span 2 units)
    out = warp(x, homography_matrices(c))  # out(p) = x(p + t): the dot moves 2 pixels left
    assert out[0, 0].argmax().item() == 10 * 21 + 8
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


def test_inverse_warp_undoes_the_warp_at_the_centre():
    images, _ = load_digit_images("digits", "test", size=40)
    x = images[:16].float() / 255.0
    hom = sample_homographies(16, torch.Generator().manual_seed(3), scale=0.5)
    y = warp(x, hom)
    back = warp(y, torch.linalg.inv(hom))
    centre = (slice(None), slice(None), slice(12, 28), slice(12, 28))
    err = (back - x)[centre].abs().mean()
    moved = (y - x)[centre].abs().mean()
    assert float(err) < 0.25 * float(moved)
    assert float(err) < 0.03


def test_digits_stand_in_splits_and_shapes():
    tr_x, tr_y = load_digit_images("digits", "train", size=40)
    te_x, te_y = load_digit_images("digits", "test", size=40)
    assert tr_x.shape[1:] == (1, 40, 40) and tr_x.dtype == torch.uint8
    assert len(tr_x) + len(te_x) == 1797 and set(tr_y.tolist()) == set(range(10))
    assert int(tr_x[:, :, :6].max()) == 0 and int(tr_x[:, :, :, -6:].max()) == 0  # padded with zeros
    assert int(tr_x.max()) == 255
    with pytest.raises(ValueError, match="valid: 'train', 'test'"):
        load_digit_images("digits", "val")
    with pytest.raises(ValueError, match="unknown digit source"):
        load_digit_images("not-a-source")


def _write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_idx_reader_and_mnist_loader(tmp_path):
    rng = np.random.default_rng(0)
    ints = rng.integers(-5, 5, size=(3, 4), dtype=np.int32)
    _write_idx(tmp_path / "ints.idx", ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints.idx"), ints)
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 5)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", imgs, gz=True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
        x, y = load_mnist(tmp_path, split)
        np.testing.assert_array_equal(x, imgs)
        np.testing.assert_array_equal(y, labels)
        padded, lab = load_digit_images(str(tmp_path), split, size=40)
        assert padded.shape == (n, 1, 40, 40)
        np.testing.assert_array_equal(padded[:, 0, 6:34, 6:34].numpy(), imgs)
        assert int(padded[:, :, :6].max()) == 0
    assert is_digit_source(str(tmp_path)) and is_digit_source("digits") and not is_digit_source(str(tmp_path / "none"))
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9]) + b"abc")
    with pytest.raises(ValueError, match="promises"):
        read_idx(tmp_path / "short.idx")


def test_pair_loader_is_deterministic_and_its_homography_explains_the_pair():
    cfg = HomographyPairConfig(size=20, batch_size=8, seed=5)
    loader = HomographyPairLoader(cfg)
    loader.set_epoch(3)
    first = next(iter(loader))
    again = next(iter(HomographyPairLoader(cfg)))  # epoch 0
    loader2 = HomographyPairLoader(cfg)
    loader2.set_epoch(3)
    same = next(iter(loader2))
    for key in ("frame_a", "frame_b", "homography", "label"):
        torch.testing.assert_close(first[key], same[key])
    assert not torch.equal(first["frame_b"], again["frame_b"])
    assert first["frame_a"].shape == (8, 20, 20, 1) and first["frame_a"].dtype == torch.uint8
    a = first["frame_a"].permute(0, 3, 1, 2).float() / 255.0
    b = first["frame_b"].permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(warp(a, first["homography"]), b, atol=1.0 / 255 + 1e-4, rtol=0)
    assert len(loader) == 1438 // 8
    # two ranks see disjoint digits of the same permutation
    r0, r1 = HomographyPairLoader(cfg, rank=0, world_size=2), HomographyPairLoader(cfg, rank=1, world_size=2)
    assert len(r0) == len(r1) == 1438 // 2 // 8
    i0 = torch.cat([b["index"] for b in r0])
    i1 = torch.cat([b["index"] for b in r1])
    assert len(i0) == len(r0) * 8 and not set(i0.tolist()) & set(i1.tolist())


def test_warped_test_set_is_fixed_by_its_seed():
    images, _ = load_digit_images("digits", "test", size=20)
    a, ha = warped_test_set(images[:10], seed=7)
    b, hb = warped_test_set(images[:10], seed=7)
    c, _ = warped_test_set(images[:10], seed=8)
    assert torch.equal(a, b) and torch.equal(ha, hb) and not torch.equal(a, c)
