"""Stable-Baselines3 integration: frozen-encoder observation wrappers, agent training, comparisons.

The public API is importable from the package (``from agents import make_env, train_agent``). The
names resolve lazily (PEP 562), so importing ``agents`` stays light (no SB3, no torch) and
``wm envs ...`` starts fast; the first use of a name imports its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it ("module:attribute" when the names differ: a package
#: attribute named like one of its submodules, e.g. ``compare``, would be replaced by that module
#: as soon as the submodule is imported).
_EXPORTS: dict[str, str] = {
    "make_env": "agents.env_stack",
    "add_normalization": "agents.env_stack",
    "EncoderVecEnvWrapper": "agents.wrappers",
    "EncoderObservationWrapper": "agents.wrappers",
    "ViewpointVecEnvWrapper": "agents.wrappers",
    "TrainConfig": "agents.config",
    "CompareConfig": "agents.config",
    "ArmSpec": "agents.config",
    "train_agent": "agents.train",
    "run_comparison": "agents.compare:compare",
    "compare_runs": "agents.stats",
    "load_runs": "agents.stats",
    "measure_reference": "agents.reference",
    "run_demo": "agents.demo",
    "evaluate_transfer": "agents.transfer",
    "DaggerConfig": "agents.imitation",
    "train_dagger": "agents.imitation",
    "StudyConfig": "agents.transfer_study",
    "run_transfer_study": "agents.transfer_study",
}

__all__ = [
    "ArmSpec",
    "CompareConfig",
    "DaggerConfig",
    "StudyConfig",
    "EncoderObservationWrapper",
    "EncoderVecEnvWrapper",
    "TrainConfig",
    "ViewpointVecEnvWrapper",
    "add_normalization",
    "compare_runs",
    "load_runs",
    "make_env",
    "measure_reference",
    "run_comparison",
    "run_demo",
    "run_transfer_study",
    "evaluate_transfer",
    "train_agent",
    "train_dagger",
]

if TYPE_CHECKING:  # pragma: no cover
    from agents.compare import compare as run_comparison
    from agents.config import ArmSpec, CompareConfig, TrainConfig
    from agents.demo import run_demo
    from agents.env_stack import add_normalization, make_env
    from agents.imitation import DaggerConfig, train_dagger
    from agents.reference import measure_reference
    from agents.stats import compare_runs, load_runs
    from agents.train import train_agent
    from agents.transfer import evaluate_transfer
    from agents.transfer_study import StudyConfig, run_transfer_study
    from agents.wrappers import EncoderObservationWrapper, EncoderVecEnvWrapper, ViewpointVecEnvWrapper


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
