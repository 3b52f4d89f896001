"""Representation learners (GQN; NISO and others through :mod:`worldmodel.models.registry`).

Each learner is an ``nn.Module`` with ``loss(batch)`` and ``encode(frames, viewpoints)``; the
training loop lives in :mod:`worldmodel.train`, never here. This package's ``__init__`` and the
``*_config`` modules are torch-free so that the ``wm`` parser can be built without torch.
"""

from worldmodel.models.registry import LearnerSpec, available_learners, get_learner, learner_names, register_learner

__all__ = ["LearnerSpec", "available_learners", "get_learner", "learner_names", "register_learner"]
