"""DDP with 2 CPU processes (torchrun, gloo): gradients equal single-process gradients on the
same global batch, and the unchanged `wm train gqn` command trains under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file

from worldmodel.models.gqn import GQN
from worldmodel.models.gqn_config import GQNConfig
from worldmodel.train.engine import LossModule, step_seed
from worldmodel.train.logger import read_metrics
from worldmodel.train.synthetic import write_synthetic_dataset

CFG = dict(
    image_size=16, r_channels=16, hidden_channels=8, z_channels=2, generation_steps=2, kernel_size=3, shared_core=False
)

# Runs in each torchrun process: the engine's DDP set-up, one backward on this rank's half of a
# fixed global batch, rank 0 saves the averaged gradients; then the real CLI trains a few steps.
WORKER = textwrap.dedent(
    """
    import sys, json, torch
    from safetensors.torch import save_file
    from worldmodel.models.gqn import GQN
    from worldmodel.models.gqn_config import GQNConfig
    from worldmodel.train import distributed as ddp
    from worldmodel.train.engine import LossModule, step_seed

    out, data, run, cfg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    info = ddp.init_distributed(torch.device("cpu"))
    assert info.world_size == 2 and info.backend == "gloo"
    torch.manual_seed(0)
    model = GQN(GQNConfig(**cfg))
    wrapped = torch.nn.parallel.DistributedDataParallel(LossModule(model))
    g = torch.Generator().manual_seed(1)
    full = {
        "context_frames": torch.rand(4, 2, 3, 16, 16, generator=g),
        "context_viewpoints": torch.randn(4, 2, 7, generator=g),
        "query_frame": torch.rand(4, 3, 16, 16, generator=g),
        "query_viewpoint": torch.randn(4, 7, generator=g),
    }
    half = {k: v[2 * info.rank: 2 * info.rank + 2] for k, v in full.items()}
    torch.manual_seed(step_seed(0, info.rank, 0))
    wrapped(half)["loss"].backward()
    if info.is_main:
        save_file({n: p.grad for n, p in model.named_parameters()}, out)
    from agents.cli import main
    code = main(["train", "gqn", "--data", data, "--out", run, "--steps", "4", "--batch-size", "4",
                 "--image-size", "16", "--r-channels", "16", "--hidden-channels", "8", "--z-channels", "2",
                 "--generation-steps", "2", "--kernel-size", "3", "--max-context", "2", "--ckpt-every", "2",
                 "--eval-every", "2", "--eval-batches", "1", "--image-every", "0", "--no-progress", "--device", "cpu"])
    sys.exit(code)
    """
)


def test_ddp_two_processes_match_single_process_gradients_and_train(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", scenes=12, views=4, size=16, seed=2)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    grads_path, run = tmp_path / "grads.safetensors", tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(grads_path),
            str(data),
            str(run),
            json.dumps(CFG),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # single process: the same global batch, the same per-half random draws, one backward
    torch.manual_seed(0)
    model = GQN(GQNConfig(**CFG))
    g = torch.Generator().manual_seed(1)
    full = {
        "context_frames": torch.rand(4, 2, 3, 16, 16, generator=g),
        "context_viewpoints": torch.randn(4, 2, 7, generator=g),
        "query_frame": torch.rand(4, 3, 16, 16, generator=g),
        "query_viewpoint": torch.randn(4, 7, generator=g),
    }
    module = LossModule(model)
    losses = []
    for r in range(2):
        torch.manual_seed(step_seed(0, r, 0))
        losses.append(module({k: v[2 * r : 2 * r + 2] for k, v in full.items()})["loss"])
    (0.5 * (losses[0] + losses[1])).backward()  # = mean over the 4 scenes of the global batch
    ddp_grads = load_file(str(grads_path))
    assert set(ddp_grads) == {n for n, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)

    # the unchanged CLI under torchrun: one run directory written by rank 0, global batch split
    meta = json.loads((run / "run.json").read_text())
    assert meta["extra"]["world_size"] == 2
    assert [r["step"] for r in read_metrics(run, "train")] == [1, 2, 3, 4]
    assert [r["step"] for r in read_metrics(run, "eval")] == [0, 2, 4]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
