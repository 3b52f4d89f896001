"""Engine hardening: resume refuses another world size unless asked to re-shard; a kill between
the two renames of a same-step checkpoint overwrite loses nothing (real subprocess, SIGKILL);
metrics.jsonl is cut in place on resume (only its tail is read); mid-epoch resume starts the
loader at the right batch without reading the skipped ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from worldmodel import checkpoint as ckpt
from worldmodel.atomic import file_sha256
from worldmodel.train import logger as run_logger
from worldmodel.train.synthetic import write_synthetic_dataset

MODEL = dict(
    image_size=16, r_channels=16, hidden_channels=8, z_channels=2, generation_steps=2, kernel_size=3, max_context=3
)


def _configs(data, out, **train):
    from worldmodel.train.engine import resolve_configs

    values = dict(
        data=str(data),
        out=str(out),
        steps=2,
        batch_size=4,
        progress=False,
        eval_every=0,
        image_every=0,
        ckpt_every=1,
        log_every=1,
    )
    values.update(train)
    return resolve_configs("gqn", None, MODEL, values)


def _set_saved_world_size(checkpoint, world_size):
    """Rewrite the resume state as if saved by ``world_size`` processes (and re-record its digest)."""
    state_json = checkpoint / ckpt.TRAIN_JSON_FILE
    structure = json.loads(state_json.read_text())
    structure["__dict__"]["world_size"] = world_size
    state_json.write_text(json.dumps(structure))
    meta = json.loads((checkpoint / ckpt.CONFIG_FILE).read_text())
    meta["files"][ckpt.TRAIN_JSON_FILE] = {"bytes": state_json.stat().st_size, "sha256": file_sha256(state_json)}
    (checkpoint / ckpt.CONFIG_FILE).write_text(json.dumps(meta))


def test_resume_refuses_another_world_size_unless_reshard_is_allowed(tmp_path, capsys):
    from worldmodel.train.engine import Trainer

    data = write_synthetic_dataset(tmp_path / "data", scenes=12, views=4, size=16, seed=1)
    out = tmp_path / "run"
    Trainer("gqn", *_configs(data, out)).fit()
    _set_saved_world_size(ckpt.list_checkpoints(out)[-1], 2)
    with pytest.raises(ValueError, match=r"saved with world size 2, this launch has 1.*--allow-reshard"):
        Trainer("gqn", *_configs(data, out, steps=3), resume=True).fit()
    result = Trainer("gqn", *_configs(data, out, steps=3, allow_reshard=True), resume=True).fit()
    assert result.step == 3
    assert "data order and RNG streams change" in capsys.readouterr().err


_KILL_MID_OVERWRITE = textwrap.dedent("""
    import os, signal, sys, torch
    from worldmodel import checkpoint as ckpt
    final = sys.argv[1]
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if os.fspath(src) == final:  # the old copy has just been moved aside: die before the new one lands
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    ckpt.save_checkpoint(final, {"w": torch.full((3,), 2.0)}, {"learner": "gqn", "model": {}, "step": 5})
""")


def test_a_kill_between_the_renames_of_an_overwrite_loses_no_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    final = root / ckpt.step_dir_name(5)
    ckpt.save_checkpoint(final, {"w": torch.full((3,), 1.0)}, {"learner": "gqn", "model": {}, "step": 5})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_MID_OVERWRITE, str(final)], env=env, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not final.exists()  # the window the issue describes: neither copy under the final name

    # a reader still finds the step (the new, complete copy), without changing anything on disk
    listed = ckpt.list_checkpoints(root)
    assert len(listed) == 1 and listed[0].name.startswith(".tmp-step_00000005")
    state, meta = ckpt.load_model_state(tmp_path)
    assert meta["step"] == 5 and torch.equal(state["w"], torch.full((3,), 2.0))
    assert not final.exists()

    # the writer repairs it before its next save (and prune keeps it)
    ckpt.save_checkpoint(
        root / ckpt.step_dir_name(6), {"w": torch.zeros(3)}, {"learner": "gqn", "model": {}, "step": 6}
    )
    ckpt.prune_checkpoints(root, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(root)] == [ckpt.step_dir_name(5), ckpt.step_dir_name(6)]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    assert torch.equal(ckpt.load_model_state(final)[0]["w"], torch.full((3,), 2.0))


def _write_metrics(path, steps, kinds=("train",)):
    with open(path, "w") as f:
        for s in range(1, steps + 1):
            for k in kinds:
                f.write(json.dumps({"kind": k, "step": s, "loss": 1.0 / s}) + "\n")


def test_metrics_are_cut_in_place_reading_only_the_tail(tmp_path, monkeypatch):
    path = tmp_path / run_logger.METRICS_FILE
    _write_metrics(path, 50_000, kinds=("train", "eval"))
    with open(path, "a") as f:
        f.write('{"kind": "train", "step": 50001, "lo')  # a line cut short by a kill
    inode, size = path.stat().st_ino, path.stat().st_size
    expected = [r for r in run_logger.read_metrics(tmp_path) if r["step"] <= 49_990]

    read = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(run_logger, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    run_logger.truncate_metrics(tmp_path, 49_990)
    monkeypatch.undo()

    assert run_logger.read_metrics(tmp_path) == expected
    assert path.stat().st_ino == inode  # cut in place, not rewritten
    assert sum(read) < 200_000 < size  # the tail since the checkpoint, not the whole file
    assert path.read_bytes().endswith(b"\n")


def test_metrics_truncation_edge_cases(tmp_path):
    path = tmp_path / run_logger.METRICS_FILE
    _write_metrics(path, 5)
    run_logger.truncate_metrics(tmp_path, 0)
    assert path.read_bytes() == b""
    _write_metrics(path, 5)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # the last record lost its newline
    run_logger.truncate_metrics(tmp_path, 10)
    assert path.read_bytes().endswith(b"\n") and len(run_logger.read_metrics(tmp_path)) == 5
    for chunk in (7, 64):  # records longer than the scan chunk
        _write_metrics(path, 30)
        with open(path, "rb+") as f:
            cut = run_logger._cut_offset(f, path.stat().st_size, 12, chunk=chunk)
        assert [json.loads(x)["step"] for x in path.read_bytes()[:cut].splitlines()] == list(range(1, 13))


def test_mid_epoch_start_batch_matches_a_full_pass_and_reads_no_skipped_batch(tmp_path, monkeypatch):
    from worldmodel.data import loader as loaders

    data = write_synthetic_dataset(tmp_path / "data", scenes=24, views=4, size=16, seed=1)
    loader = loaders.make_gqn_loader(data, batch_size=4, max_context=3, seed=3)
    loader.set_epoch(2)
    full = [b["query_frame"] for b in loader]
    reads = []
    real = loaders.GQNViews.__getitem__
    monkeypatch.setattr(loaders.GQNViews, "__getitem__", lambda self, specs: reads.append(1) or real(self, specs))
    loader.set_epoch(2, start_batch=4)
    tail = [b["query_frame"] for b in loader]
    assert len(reads) == len(full) - 4 == len(tail)
    assert all(torch.equal(a, b) for a, b in zip(full[4:], tail))
    loader.set_epoch(3)  # later passes start at their beginning again
    assert len(list(loader)) == len(full)
    with pytest.raises(ValueError, match="start_batch must be in 0..6"):
        loader.set_epoch(2, start_batch=7)
    assert np.isfinite(tail[0].numpy()).all()
