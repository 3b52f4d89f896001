"""NaN guard: a loss that turns NaN stops training with a message naming the step, writes
nothing for that step and keeps the last good checkpoint loadable. Also shows that a learner
added through the registry trains with the generic engine and `wm train <name>`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from worldmodel import checkpoint as ckpt
from worldmodel.models.gqn import GQN
from worldmodel.models.gqn_config import GQNConfig
from worldmodel.models.registry import LearnerSpec, register_learner, unregister_learner
from worldmodel.train.engine import Trainer, TrainingDiverged, resolve_configs
from worldmodel.train.logger import read_metrics
from worldmodel.train.synthetic import write_synthetic_dataset

BAD_STEP = 5


@dataclasses.dataclass
class FlakyConfig(GQNConfig):
    """A GQN whose loss becomes non-finite at one step."""

    bad_step: int = BAD_STEP
    """0-based step at which the loss turns NaN."""
    bad_value: float = float("nan")
    """The value the loss takes there (NaN or inf)."""


class FlakyGQN(GQN):
    def set_step(self, step: int) -> None:
        super().set_step(step)
        self._step = step

    def loss(self, batch):
        out = super().loss(batch)
        if self._step >= self.config.bad_step:
            out["loss"] = out["loss"] * self.config.bad_value
        return out


@pytest.fixture(scope="module", autouse=True)
def flaky_learner():
    register_learner(
        LearnerSpec(
            name="flaky-gqn",
            config_class=FlakyConfig,
            builder=FlakyGQN,
            loader="gqn",
            loader_options=("max_context",),
            presets={
                "tiny": {
                    "model": dict(
                        image_size=16,
                        r_channels=16,
                        hidden_channels=8,
                        z_channels=2,
                        generation_steps=2,
                        kernel_size=3,
                        max_context=2,
                    )
                }
            },
            default_preset="tiny",
            description="test learner",
        ),
        replace=True,
    )
    yield
    unregister_learner("flaky-gqn")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("nan") / "d", scenes=12, views=3, size=16, seed=3)


def flaky_trainer(dataset, out, model_overrides: dict, **train_overrides) -> Trainer:
    """A CPU trainer of the flaky learner: batch 4, no evaluation or images, no progress bar."""
    base = dict(data=str(dataset), out=str(out), batch_size=4, eval_every=0, image_every=0, progress=False)
    model_cfg, cfg = resolve_configs("flaky-gqn", None, model_overrides, {**base, "device": "cpu", **train_overrides})
    return Trainer("flaky-gqn", model_cfg, cfg)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_the_step_and_keeps_last_good_checkpoint(dataset, tmp_path, bad_value):
    trainer = flaky_trainer(
        dataset, tmp_path / "run", {"bad_value": bad_value}, steps=20, ckpt_every=2, keep_checkpoints=5
    )
    with pytest.raises(TrainingDiverged, match=f"the loss is {bad_value} at step {BAD_STEP}") as info:
        trainer.fit()
    assert info.value.step == BAD_STEP
    assert info.value.checkpoint.name == "step_00000004"
    assert str(info.value.checkpoint) in str(info.value)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run")]
    assert names == ["step_00000002", "step_00000004"]
    assert [r["step"] for r in read_metrics(tmp_path / "run", "train")] == [1, 2, 3, 4, 5]
    # the kept checkpoint is intact and holds finite weights
    state, meta = ckpt.load_model_state(tmp_path / "run")
    assert meta["step"] == 4 and all(torch.isfinite(v).all() for v in state.values())


def test_cli_exit_code_and_message(dataset, tmp_path, capsys):
    from agents.cli import main

    code = main(
        [
            "train",
            "flaky-gqn",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "r"),
            "--steps",
            "8",
            "--batch-size",
            "4",
            "--ckpt-every",
            "3",
            "--eval-every",
            "0",
            "--no-progress",
            "--bad-step",
            "4",
        ]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "the loss is nan at step 4" in err and "step_00000003" in err


def test_deferred_read_skips_the_bad_update_and_all_later_ones_on_the_device(dataset, tmp_path):
    """Metrics are read every log_every steps; the bad step's update and the ones after it never land."""

    def run(steps: int, out: str) -> Trainer:
        return flaky_trainer(dataset, tmp_path / out, {}, steps=steps, log_every=10, ckpt_every=0)

    clean = run(BAD_STEP, "clean")  # stops just before the bad step
    clean.fit()
    flaky = run(20, "flaky")
    assert flaky.config.log_every > BAD_STEP + 1  # the non-finite step is read several steps after it ran
    with pytest.raises(TrainingDiverged, match=f"at step {BAD_STEP}"):
        flaky.fit()
    assert flaky.fused  # the CPU fused kernel is what skips on the device
    for (name, a), b in zip(clean.model.state_dict().items(), flaky.model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    state = flaky.optimizer.state_dict()["state"]
    assert all(int(s["step"]) == BAD_STEP for s in state.values())  # no later step counted either
    assert [r["step"] for r in read_metrics(tmp_path / "flaky", "train")] == list(range(1, BAD_STEP + 1))
