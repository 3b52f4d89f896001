"""A training hook that logs the local equivariance error to TensorBoard every N steps.

Use it with the training engine (``Trainer(..., step_hooks=[hook])``: the engine calls it after
every optimiser step on rank 0 and writes what it returns under ``diagnostics/`` in the run's
TensorBoard), or in any loop of your own with a ``SummaryWriter``::

    hook = LEEHook(probe_images, transforms=("translate_x", "rotate"), every=100, writer=writer)
    for step in range(1, steps + 1):
        train_step()
        hook(model, step)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from worldmodel.diagnostics.lie_derivative import local_equivariance_error


class LEEHook:
    """Every ``every`` steps, the LEE of a fixed probe batch for a few transforms.

    Args:
        images: float probe images ``[B, C, H, W]`` (kept; moved to the model's device when used).
        transforms: transform names.
        every: log every this many steps (steps are 1-based, as the engine counts them).
        head: ``"softmax"`` for classifiers, a callable, or None.
        output: ``"auto"``, ``"vector"`` or ``"map"``.
        function: ``model -> callable images -> tensor`` (default: the model itself, or
            :func:`~worldmodel.diagnostics.adapters.image_function` for learners with ``encode``).
        writer: a ``torch.utils.tensorboard.SummaryWriter`` to write to (optional).
        prefix: scalar names are ``{prefix}/{transform}`` (and ``{prefix}/{transform}_relative``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        transforms: Sequence[str] = ("translate_x", "rotate"),
        every: int = 100,
        head: Any = None,
        output: str = "auto",
        function: Callable[[nn.Module], Callable] | None = None,
        writer: Any = None,
        prefix: str = "lee",
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        from worldmodel.diagnostics.transforms import resolve_transforms

        self.transforms = [t.name for t in resolve_transforms(list(transforms))]
        self.images = images
        self.every = int(every)
        self.head, self.output, self.function = head, output, function
        self.writer, self.prefix = writer, prefix
        self.history: list[tuple[int, dict[str, float]]] = []

    def _function(self, model: nn.Module) -> Callable:
        if self.function is not None:
            return self.function(model)
        if hasattr(model, "encode") and not isinstance(model, nn.Sequential):
            from worldmodel.diagnostics.adapters import image_function

            return image_function(model)
        return model

    def __call__(self, model: nn.Module, step: int) -> dict[str, float] | None:
        """Measure and log at multiples of ``every``; returns the scalars (or None in between)."""
        if step % self.every:
            return None
        was_training = model.training
        model.eval()
        try:
            p = next(iter(model.parameters()), None)
            x = self.images.to(device=p.device, dtype=p.dtype) if p is not None else self.images
            res = local_equivariance_error(
                self._function(model),
                x,
                self.transforms,
                head=self.head,
                output=self.output,
                progress=False,
                batch_size=max(1, x.shape[0]),
            )
        finally:
            model.train(was_training)
        scalars: dict[str, float] = {}
        for name, r in res.items():
            scalars[name] = r.mean
            scalars[f"{name}_relative"] = float(r.relative.mean())
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(f"{self.prefix}/{k}", v, step)
        self.history.append((step, scalars))
        return scalars
