"""Learner registry: how the training engine and the ``wm train`` CLI find a learner.

A learner (GQN, NISO, ...) is described by a :class:`LearnerSpec`: its model-config dataclass,
a builder ``config -> nn.Module``, the kind of batches it trains on (``"gqn"`` context/query
batches or ``"pair"`` frame pairs, see the data contract), which model-config fields are data
options passed to the loader, named presets, and the function that freezes a checkpoint.

The spec only holds ``"module:attribute"`` strings and plain data, so it can live in a
torch-free module and ``wm --help`` stays fast. Adding a learner is one line in
:data:`LEARNER_SPECS` (or a call to :func:`register_learner`); ``wm train <name>`` and the
engine then work for it unchanged.

The model API every learner follows (``nn.Module``):

* ``loss(batch) -> dict[str, Tensor]``: scalar tensors; ``"loss"`` is minimised, the rest is
  logged. ``batch`` comes from :func:`worldmodel.data.transfer.to_device` (floats in [0,1],
  channel-first images, 7-d viewpoints).
* ``encode(frames [B,3,H,W], viewpoints [B,7]) -> [B, D]`` features of single views.
* optional ``set_step(step)``: called before every training step (schedules inside the model).
* optional ``eval_loss(batch)``: held-out metrics (default: ``loss`` under ``no_grad``).
* optional ``visualise(batch) -> dict[str, Tensor]``: images in [0,1], ``[N,3,H,W]`` (one row)
  or ``[R,C,3,H,W]`` (a grid), written to TensorBoard.
* a model config dataclass may have ``image_size: int | None``; ``None`` is filled from the data,
  and the spec's ``configure`` hook may fill other data-dependent fields.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Loader kinds of the data contract (``worldmodel.data.loader.make_<kind>_loader``).
LOADER_KINDS: tuple[str, ...] = ("gqn", "pair", "image")

#: learner name -> "module:attribute" of its :class:`LearnerSpec` (module must be torch-free).
LEARNER_SPECS: dict[str, str] = {
    "gqn": "worldmodel.models.gqn_config:SPEC",
    "niso": "worldmodel.models.niso_config:SPEC",
    "vae": "worldmodel.models.vae_config:SPEC",
}

_REGISTERED: dict[str, LearnerSpec] = {}


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class LearnerSpec:
    """Everything the engine needs to know about one learner."""

    name: str
    """Learner name used on the command line and in checkpoints (``config.json["learner"]``)."""
    config_class: str | type
    """``"module:Class"`` of the model-config dataclass (in a torch-free module), or the class itself."""
    builder: str | Callable[[Any], Any]
    """``"module:function"`` (or a callable) mapping a model config to the ``nn.Module``."""
    loader: str
    """Batch kind: 'gqn' (context/query scenes), 'pair' (frame pairs at a skip) or 'image' (single views)."""
    loader_options: tuple[str, ...] = ()
    """Model-config fields passed as keyword arguments to the loader (e.g. ``max_context``)."""
    presets: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    """Named presets: ``{"small": {"model": {...}, "train": {...}}, ...}`` (overrides of the defaults)."""
    default_preset: str = "small"
    """Preset used when none is named."""
    configure: str | Callable[..., Any] | None = None
    """Optional ``"module:function"`` ``(model_config, data_info, first_batch) -> model_config`` that fills
    data-dependent fields left as None before the model is built (``first_batch()`` returns a CPU batch)."""
    frozen_loader: str = ""
    """``"module:function"`` building a :class:`worldmodel.encoders.FrozenEncoder` from a checkpoint."""
    description: str = ""
    """One line for ``wm train --help``."""
    data_builder: str = ""
    """Optional ``"module:function"``
    ``(train_config, model_config, batch_per_rank) -> (RunData | None, model_config) | None`` for learner-specific
    data (NISO: ``--data digits``) and data-dependent model settings; a ``None`` RunData (or result) falls back to the
    standard loaders of ``config.data``."""
    legacy_defaults: Mapping[str, Any] = field(default_factory=dict)
    """Model-config fields added after checkpoints were first written, with the value that reproduces those checkpoints'
    architecture (a new field's default may differ); filled into a checkpoint's config when it lacks them."""

    def __post_init__(self) -> None:
        if self.loader not in LOADER_KINDS:
            raise ValueError(
                f"learner {self.name!r}: loader {self.loader!r} is not valid; valid values: {', '.join(LOADER_KINDS)}"
            )
        if self.default_preset not in self.presets:
            raise ValueError(
                f"learner {self.name!r}: default preset {self.default_preset!r} is not among {sorted(self.presets)}"
            )

    def custom_data(self, train_config: Any, model_config: Any, batch_per_rank: int) -> Any:
        """``(RunData or None, model_config)`` from :attr:`data_builder`, or ``None`` (no hook)."""
        if not self.data_builder:
            return None
        return _resolve(self.data_builder)(train_config, model_config, batch_per_rank)

    def config_cls(self) -> type:
        """The model-config dataclass."""
        return _resolve(self.config_class) if isinstance(self.config_class, str) else self.config_class

    def build(self, config: Any) -> Any:
        """Build the model (imports torch)."""
        builder = _resolve(self.builder) if isinstance(self.builder, str) else self.builder
        return builder(config)

    def configure_from_data(self, config: Any, data_info: Mapping[str, Any], first_batch: Callable[[], Any]) -> Any:
        """Apply the ``configure`` hook (identity when there is none)."""
        if self.configure is None:
            return config
        hook = _resolve(self.configure) if isinstance(self.configure, str) else self.configure
        return hook(config, data_info, first_batch)

    def preset(self, name: str | None) -> Mapping[str, Mapping[str, Any]]:
        """The overrides of preset ``name`` (default preset if ``None``)."""
        name = self.default_preset if name is None else name
        if name not in self.presets:
            raise ValueError(
                f"unknown preset {name!r} for learner {self.name!r}; valid values: {', '.join(map(repr, self.presets))}"
            )
        return self.presets[name]

    def make_config(self, preset: str | None = None, **overrides: Any) -> Any:
        """Model config of ``preset`` with ``overrides`` applied."""
        from worldmodel.train.config import config_from_dict

        cls = self.config_cls()
        values = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
        values.update(self.preset(preset).get("model", {}))
        values.update(overrides)
        return config_from_dict(cls, values, f"{self.name} model config")

    def loader_kwargs(self, config: Any) -> dict[str, Any]:
        """Keyword arguments for the data loader taken from the model config."""
        return {k: getattr(config, k) for k in self.loader_options}


def register_learner(spec: LearnerSpec, replace: bool = False) -> None:
    """Add a learner at run time (plugins, tests)."""
    if not replace and (spec.name in _REGISTERED or spec.name in LEARNER_SPECS):
        raise ValueError(f"learner {spec.name!r} is already registered")
    _REGISTERED[spec.name] = spec


def unregister_learner(name: str) -> None:
    """Remove a learner added with :func:`register_learner` (no-op if absent)."""
    _REGISTERED.pop(name, None)


def learner_names() -> list[str]:
    """Names of all known learners."""
    return list(dict.fromkeys([*LEARNER_SPECS, *_REGISTERED]))


def get_learner(name: str) -> LearnerSpec:
    """The spec of learner ``name``; raises ``ValueError`` listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in LEARNER_SPECS:
        raise ValueError(f"unknown learner {name!r}; valid values: {', '.join(map(repr, learner_names()))}")
    spec = _resolve(LEARNER_SPECS[name])
    if not isinstance(spec, LearnerSpec) or spec.name != name:
        raise TypeError(f"{LEARNER_SPECS[name]} is not the LearnerSpec of {name!r}")
    return spec


def available_learners() -> dict[str, LearnerSpec]:
    """Specs of the learners whose modules import (a missing module is skipped)."""
    out = {}
    for name in learner_names():
        try:
            out[name] = get_learner(name)
        except ModuleNotFoundError as err:
            target = LEARNER_SPECS.get(name, "").partition(":")[0]
            if err.name != target:
                raise
    return out
