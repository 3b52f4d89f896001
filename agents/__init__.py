"""Stable-Baselines3 integration: frozen-encoder observation wrappers, agent training, comparisons.

Submodules import SB3 and torch; this package's ``__init__`` stays light so that ``wm envs ...``
starts fast.
"""
