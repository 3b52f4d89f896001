"""The packages' public API: names importable from the package ``__init__``s are the objects
themselves (not same-named submodules), resolve lazily, and every registered env has a time limit."""

from __future__ import annotations

import inspect
import subprocess
import sys

import gymnasium as gym
import pytest

import agents
import envs
import worldmodel
import worldmodel.align
import worldmodel.data


@pytest.mark.parametrize("package", [agents, envs, worldmodel, worldmodel.data, worldmodel.align])
def test_every_exported_name_is_a_function_class_or_value_not_a_module(package):
    import importlib
    import pkgutil

    # every submodule imported first: an export named like one would then be shadowed by it
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    for name in package.__all__:
        value = getattr(package, name)
        assert not inspect.ismodule(value), f"{package.__name__}.{name} is a module"


def test_make_env_from_the_package_is_the_function_even_after_its_module_is_imported():
    import agents.env_stack  # noqa: F401  (a submodule import must not shadow the function)
    from agents import make_env

    assert inspect.isfunction(make_env)
    assert make_env is agents.env_stack.make_env
    from worldmodel.data import collect_dataset

    assert inspect.isfunction(collect_dataset)


def test_unknown_name_raises_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="no_such_name"):
        agents.no_such_name  # noqa: B018


def test_importing_the_packages_loads_neither_torch_nor_sb3():
    code = (
        "import sys, agents, envs, worldmodel, worldmodel.data, worldmodel.align\n"
        "heavy = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_every_registered_spec_has_max_episode_steps(env_id):
    spec = gym.spec(env_id)
    assert isinstance(spec.max_episode_steps, int) and spec.max_episode_steps > 0
