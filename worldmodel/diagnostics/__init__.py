"""Equivariance diagnostics for any encoder (see docs/diagnostics.md).

* :mod:`~worldmodel.diagnostics.transforms`: one-parameter image transforms ``T_t`` and their
  closed-form tangents;
* :mod:`~worldmodel.diagnostics.lie_derivative`: Lie derivatives and the local equivariance
  error of any torch callable (forward mode);
* :mod:`~worldmodel.diagnostics.layerwise`: each layer's share of the LEE;
* :mod:`~worldmodel.diagnostics.isometry`: latent isometry error under a fixed camera motion or
  homography (Procrustes and least squares);
* :mod:`~worldmodel.diagnostics.adapters`: frozen encoders as image functions, untrained controls;
* :mod:`~worldmodel.diagnostics.hooks`: a TensorBoard hook for training loops;
* :mod:`~worldmodel.diagnostics.aliasing`: the strided vs blur-pooled CNN experiment;
* :mod:`~worldmodel.diagnostics.report` and :mod:`~worldmodel.diagnostics.cli`: ``wm diagnose equivariance``.

The names below are imported lazily, so ``import worldmodel.diagnostics`` does not load torch.
The single-transform function is ``worldmodel.diagnostics.lie_derivative.lie_derivative`` (the
package attribute ``lie_derivative`` is its module).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "TRANSFORMS": "transforms",
    "TRANSFORM_NAMES": "transforms",
    "GEOMETRIC_NAMES": "transforms",
    "ImageTransform": "transforms",
    "apply_transform": "transforms",
    "image_tangent": "transforms",
    "get_transform": "transforms",
    "local_equivariance_error": "lie_derivative",
    "LEEResult": "lie_derivative",
    "layerwise_lee": "layerwise",
    "LayerwiseResult": "layerwise",
    "LayerShare": "layerwise",
    "procrustes": "isometry",
    "least_squares_map": "isometry",
    "isometry_error": "isometry",
    "IsometryResult": "isometry",
    "camera_motion_pairs": "isometry",
    "scene_isometry": "isometry",
    "digit_isometry": "isometry",
    "image_function": "adapters",
    "untrained_encoder": "adapters",
    "LEEHook": "hooks",
    "diagnose_encoders": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"worldmodel.diagnostics.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'worldmodel.diagnostics' has no attribute {name!r}")
