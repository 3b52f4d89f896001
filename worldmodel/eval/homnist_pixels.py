"""The raw-pixel reference of the homNIST classification protocol.

A multinomial logistic regression (scikit-learn) on the raw pixels of the *clean* training
digits, tested on exactly the warped test set the representation heads are tested on
(:func:`worldmodel.data.homnist.iter_homnist_test_set` with the same seed and sampler, or the
published ``homNIST_test.mat``). It is the floor a representation must clear: a learned
representation that classifies warped digits no better than pixels has learned no invariance.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from worldmodel.data.homnist import HOMNIST_WARPS, HomnistSamplerConfig, protocol_digits, warped_test_batches


def _flat(images: torch.Tensor) -> np.ndarray:
    return images.reshape(images.shape[0], -1).numpy().astype(np.float32) / 255.0


def pixel_baseline(
    source: str = "digits",
    size: int = 40,
    sigma_scale: float = 1.0,
    mat_path: str | None = None,
    warps: int = HOMNIST_WARPS,
    sampler: HomnistSamplerConfig | None = None,
    test_seed: int = 1234,
    max_train: int | None = None,
    max_test_digits: int | None = None,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """Logistic regression on raw pixels of clean ``source`` training digits, tested on warped test digits.

    Args mirror :func:`worldmodel.eval.niso_protocol.homnist_classification` so that both read the
    same test images: ``sigma_scale`` replaces the sampler's scale (pass the model's), ``c`` is
    scikit-learn's inverse L2 strength.

    Returns:
        dict with ``warped_accuracy``, ``clean_accuracy``, ``train_accuracy``, counts and settings.
    """
    from sklearn.linear_model import LogisticRegression

    (train_x, train_y), (test_x, test_y) = protocol_digits(source, size, max_train, max_test_digits)
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit(_flat(train_x), train_y.numpy())
    walk = HomnistSamplerConfig(**{**asdict(sampler or HomnistSamplerConfig()), "scale": float(sigma_scale)})
    batches, test_set = warped_test_batches(
        test_x, test_y, size, mat_path, warps, test_seed, walk, max_test_digits, source
    )
    correct, total = 0, 0
    for images, labels in batches:
        correct += int((clf.predict(_flat(images)) == labels.numpy()).sum())
        total += int(images.shape[0])
    return {
        "protocol": "pixels-logistic",
        "warped_accuracy": correct / max(1, total),
        "clean_accuracy": float((clf.predict(_flat(test_x)) == test_y.numpy()).mean()),
        "train_accuracy": float((clf.predict(_flat(train_x)) == train_y.numpy()).mean()),
        "warped_images": total,
        "test_digits": int(test_x.shape[0]),
        "train_digits": int(train_x.shape[0]),
        "test_set": test_set,
        "config": {"c": c, "max_iter": max_iter},
    }
