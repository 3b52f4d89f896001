"""The sim-to-real study: every alignment method, both target domains, encoder and policy measures.

:func:`run_transfer_study` is resumable: each (domain, method, seed) cell is fitted once (the
adapted encoder is saved under ``OUT/encoders``) and every measure is cached as JSON under
``OUT/cells``; rerunning skips what exists and picks up agents that have finished since.

Protocol (held-out splits by episode, no target labels, pairs for evaluation only):

* frame sets (``OUT/frames``): sim frames of training episodes (alignment source and probe fit),
  unlabeled target frames of *other* episodes (alignment target), and held-out target
  episodes rendered with their sim twins (``paired_domain="sim"``) for the measures;
* seed ``s`` pairs agent ``s`` (trained in sim on the frozen sim encoder) with alignment seed ``s``;
* policy scores are normalised by the expert reference (expert 1, zero action 0); the gap closed
  by a method is computed per seed, ``(adapted - unadapted) / (sim - unadapted)``, with the
  unadapted and sim scores of the same agent, then averaged over seeds with a bootstrap CI;
* ``randomised`` (domain randomisation) is an encoder trained on randomised-domain data with its
  own agents (trained in sim on it); its gap is measured against the sim encoder's unadapted and
  sim scores of the same seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Method name -> :class:`worldmodel.align.fit.AlignConfig` fields (``randomised`` is not fitted).
METHOD_SPECS: dict[str, dict[str, Any]] = {
    "none": dict(method="none"),
    "randomised": {},
    "colour": dict(method="colour"),
    "coral": dict(method="coral"),
    "mmd": dict(method="mmd"),
    "ot-emd": dict(method="ot", loss="emd"),
    "ot-sinkhorn": dict(method="ot", loss="sinkhorn"),
    "ot-sinkhorn-divergence": dict(method="ot", loss="sinkhorn-divergence"),
    "ot-unbalanced": dict(method="ot", loss="unbalanced"),
    "ot-sinkhorn-finetune": dict(method="ot", loss="sinkhorn", mode="finetune", source_loss="anchor+learner"),
    "joint-ot": dict(method="joint-ot"),
    "colour+ot-sinkhorn": dict(method="ot", loss="sinkhorn", colour_first=True),
    "colour+ot-sinkhorn-finetune": dict(
        method="ot", loss="sinkhorn", colour_first=True, mode="finetune", source_loss="anchor+learner"
    ),
    "randomised+ot-sinkhorn": dict(method="ot", loss="sinkhorn"),
}
#: Learning rate of every fitted method (chosen once on a development pair set, episodes 300000..,
#: disjoint from the test pairs: docs/transfer.md).
FIT_LR = 3e-3


def on_randomised(method: str) -> bool:
    """Whether a method uses the randomised-domain encoder and its agents."""
    return method == "randomised" or method.startswith("randomised+")


TARGET_DOMAINS: tuple[str, ...] = ("real", "real-hard")


@dataclass
class StudyConfig:
    """Inputs and sizes of the study."""

    out: str
    """Output directory (resumable)."""
    encoder: str
    """The sim GQN (checkpoint or run directory)."""
    agents: str
    """Directory of the sim agents' runs ``s0 .. s{seeds-1}``."""
    encoder_randomised: str | None = None
    """GQN trained on randomised-domain data (``None``: no ``randomised`` row)."""
    agents_randomised: str | None = None
    """Its agents' runs ``s0 ..``."""
    source_data: str | None = None
    """Sim scene dataset of the encoder (learner loss of the finetune method)."""
    domains: tuple[str, ...] = TARGET_DOMAINS
    """Target domains."""
    methods: tuple[str, ...] = tuple(METHOD_SPECS)
    """Rows of the table."""
    seeds: int = 5
    """Seeds (agent s with alignment seed s)."""
    train_episodes: int = 150
    """Episodes of each training frame set (20 frames each)."""
    eval_episodes: int = 60
    """Held-out paired episodes of each target domain."""
    policy_episodes: int = 16
    """Evaluation episodes per policy cell (the same seeds for every method)."""
    steps: int = 150
    """Optimiser steps per fit."""
    batch_size: int = 128
    """Samples per domain per step (adapter fits)."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"target_marker": True})
    """Env options of the frame sets (the agents' own options are read from their runs)."""
    size: int = 32
    """Image size of the frame sets (the encoder's input size)."""
    cloud_method: str = "ot-sinkhorn"
    """Method whose seed-0 encoder the feature-cloud figure shows."""


def _frames(cfg: StudyConfig, name: str, domain: str, episodes: int, seed: int, paired: str | None):
    from worldmodel.align.frames import FrameSet, collect_frames

    path = Path(cfg.out) / "frames" / f"{name}.npz"
    if path.is_file():
        return FrameSet.load(path)
    fs = collect_frames(
        domain, episodes=episodes, steps=20, seed=seed, size=cfg.size, paired_domain=paired, env_kwargs=cfg.env_kwargs
    )
    fs.save(path)
    return fs


def frame_sets(cfg: StudyConfig) -> dict[str, Any]:
    """The sim training set and, per target domain, its unlabeled training set and paired eval set.

    Episode seeds never overlap: sim training 0.., target training 100000.., evaluation 200000..
    """
    sets = {"sim": _frames(cfg, "sim_train", "sim", cfg.train_episodes, 0, None)}
    for d in cfg.domains:
        sets[f"{d}_train"] = _frames(cfg, f"{d}_train", d, cfg.train_episodes, 100_000, None)
        sets[f"{d}_pairs"] = _frames(cfg, f"{d}_pairs", d, cfg.eval_episodes, 200_000, "sim")
    return sets


def _cell(cfg: StudyConfig, kind: str, domain: str, method: str, seed: int) -> Path:
    return Path(cfg.out) / "cells" / f"{kind}_{domain}_{method}_s{seed}.json"


def _write(path: Path, obj: Any) -> None:
    from worldmodel.atomic import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)


def _agent(cfg: StudyConfig, method: str, seed: int) -> Path | None:
    root = cfg.agents_randomised if on_randomised(method) else cfg.agents
    run = Path(root) / f"s{seed}" if root else None
    return run if run is not None and (run / "done.json").is_file() else None


def adapted_encoder(cfg: StudyConfig, sets: dict[str, Any], domain: str, method: str, seed: int, base: Any):
    """The adapted encoder of a cell (fitted and saved on first use), or ``None`` if it cannot be made yet."""
    from agents.transfer import policy_head
    from worldmodel.align.fit import AlignConfig, fit_alignment
    from worldmodel.encoders import load_encoder

    if on_randomised(method) and not cfg.encoder_randomised:
        return None
    if method == "randomised":
        return load_encoder(cfg.encoder_randomised)
    if on_randomised(method):
        base = load_encoder(cfg.encoder_randomised)
    path = Path(cfg.out) / "encoders" / domain / method / f"s{seed}"
    if (path / "config.json").is_file():
        return load_encoder(str(path))
    head = None
    if method == "joint-ot":
        run = _agent(cfg, method, seed)
        if run is None:
            return None
        head = policy_head(run)
    config = AlignConfig(
        **{"lr": FIT_LR, **METHOD_SPECS[method]}, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed
    )
    adapted, history = fit_alignment(
        base, sets["sim"], sets[f"{domain}_train"], config, head=head, source_data=cfg.source_data, progress=False
    )
    _save_fit(
        path,
        cfg.encoder_randomised if on_randomised(method) else cfg.encoder,
        method,
        config,
        adapted,
        history,
        domain,
        cfg.out,
    )
    return adapted


def _save_fit(
    path: Path, base_path: str, method: str, config: Any, adapted: Any, history: list[dict], domain: str, out: str
) -> None:
    """The adapted encoder (checkpoint directory), its run metadata and TensorBoard log."""
    from worldmodel.align.encoder import save_aligned
    from worldmodel.align.fit import write_history
    from worldmodel.run_metadata import write_run_metadata

    model = adapted.model
    state = model.base.state_dict() if config.mode == "finetune" and config.method not in ("none", "colour") else None
    save_aligned(
        path,
        base_path,
        method,
        asdict(config),
        adapter=model.adapter,
        colour_map=model.colour_map,
        encoder_state=state,
    )
    extra = {"target_domain": domain, "frames": str(Path(out) / "frames")}
    write_run_metadata(path, config, config.seed, extra=extra)
    write_history(str(path / "tb"), history)


def encoder_cells(cfg: StudyConfig, sets: dict[str, Any]) -> None:
    """Fit every (domain, method, seed) that can be fitted now and cache its encoder measures."""
    from tqdm import tqdm

    from worldmodel.align.measures import encoder_measures
    from worldmodel.encoders import load_encoder

    base = load_encoder(cfg.encoder)
    todo = [(d, m, s) for s in range(cfg.seeds) for d in cfg.domains for m in cfg.methods]
    for d, m, s in tqdm(todo, desc="encoder cells"):
        path = _cell(cfg, "encoder", d, m, s)
        if path.is_file() or (on_randomised(m) and not cfg.encoder_randomised):
            continue
        adapted = adapted_encoder(cfg, sets, d, m, s, base)
        if adapted is None:
            continue
        reference = load_encoder(cfg.encoder_randomised) if on_randomised(m) else base
        _write(path, {**encoder_measures(adapted, reference, sets["sim"], sets[f"{d}_pairs"]), "seed": s})


def policy_cells(cfg: StudyConfig, sets: dict[str, Any]) -> None:
    """Evaluate every finished agent in sim and in each target domain through each method's encoder."""
    from tqdm import tqdm

    from agents.transfer import evaluate_transfer
    from worldmodel.encoders import load_encoder

    base = load_encoder(cfg.encoder)
    todo = [("sim", "none", s) for s in range(cfg.seeds)]
    if "randomised" in cfg.methods:
        todo += [("sim", "randomised", s) for s in range(cfg.seeds)]  # the DR agents' own sim score
    todo += [(d, m, s) for s in range(cfg.seeds) for d in cfg.domains for m in cfg.methods]
    for d, m, s in tqdm(todo, desc="policy cells"):
        path = _cell(cfg, "policy", d, m, s)
        run = _agent(cfg, m, s)
        if path.is_file() or run is None:
            continue
        enc = (
            base
            if (d == "sim" and m == "none")
            else adapted_encoder(cfg, sets, d if d != "sim" else "real", m, s, base)
        )
        if enc is None:
            continue
        _write(path, {**evaluate_transfer(run, enc, domain=d, episodes=cfg.policy_episodes), "seed": s})


def _load_cells(cfg: StudyConfig, kind: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    out = {}
    for p in sorted((Path(cfg.out) / "cells").glob(f"{kind}_*.json")):
        rec = json.loads(p.read_text())
        domain, method = p.stem[len(kind) + 1 :].rsplit("_s", 1)[0].split("_", 1)
        out[(domain, method, int(rec["seed"]))] = rec
    return out


def summarise(cfg: StudyConfig) -> dict[str, Any]:
    """Per (domain, method): means and bootstrap CIs over seeds of every measure, and the gap closed."""
    from agents.reference import evaluation_seeds, measure_reference
    from worldmodel.eval.intervals import mean_ci

    enc, pol = _load_cells(cfg, "encoder"), _load_cells(cfg, "policy")
    ref = measure_reference("wm/JacoReach-v1", {}, evaluation_seeds(1_000_000, cfg.policy_episodes))

    def norm(rec: dict[str, Any]) -> float:
        return float(np.mean(ref.normalise(np.asarray(rec["returns"]))))

    def stat(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"n": 0}
        lo, hi = mean_ci(values)
        return {"mean": float(np.mean(values)), "ci": [lo, hi], "n": len(values), "values": values}

    rows: dict[str, Any] = {}
    for d in cfg.domains:
        for m in cfg.methods:
            row: dict[str, Any] = {}
            seeds = [s for s in range(cfg.seeds) if (d, m, s) in enc]
            for key in ("paired_error", "ot_distance", "r2_sim", "r2_target"):
                row[key] = stat([enc[(d, m, s)][key] for s in seeds])
            scores, gaps, sims = [], [], []
            for s in range(cfg.seeds):
                if (d, m, s) not in pol or (d, "none", s) not in pol or ("sim", "none", s) not in pol:
                    continue
                sim = norm(pol[("sim", "none", s)])
                un, ad = norm(pol[(d, "none", s)]), norm(pol[(d, m, s)])
                scores.append(ad)
                dr_sim = ("sim", "randomised", s)
                sims.append(norm(pol[dr_sim]) if on_randomised(m) and dr_sim in pol else sim)
                gaps.append((ad - un) / (sim - un) if abs(sim - un) > 1e-9 else float("nan"))
            row["policy_score"] = stat(scores)
            row["policy_sim_score"] = stat(sims)
            row["gap_closed"] = stat([g for g in gaps if np.isfinite(g)])
            rows[f"{d}/{m}"] = row
    return {"reference": ref.to_dict(), "rows": rows, "config": asdict(cfg)}


def run_transfer_study(cfg: StudyConfig, stages: tuple[str, ...] = ("encoders", "policy", "report")) -> dict[str, Any]:
    """Run the requested stages (see the module doc); returns the summary when ``report`` runs."""
    from worldmodel.atomic import atomic_write_json

    for m in cfg.methods:
        if m not in METHOD_SPECS:
            raise ValueError(f"unknown method {m!r}; valid values: {', '.join(map(repr, METHOD_SPECS))}")
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    sets = frame_sets(cfg)
    if "encoders" in stages:
        encoder_cells(cfg, sets)
    if "policy" in stages:
        policy_cells(cfg, sets)
    summary: dict[str, Any] = {}
    if "report" in stages:
        summary = summarise(cfg)
        atomic_write_json(Path(cfg.out) / "summary.json", summary)
        from agents.transfer_report import plot_clouds, write_report
        from worldmodel.encoders import load_encoder

        base = load_encoder(cfg.encoder)
        figs = Path(cfg.out) / "figures"
        figs.mkdir(parents=True, exist_ok=True)
        for d in cfg.domains:
            adapted = adapted_encoder(cfg, sets, d, cfg.cloud_method, 0, base)
            if adapted is not None:
                plot_clouds(base, base, adapted, sets[f"{d}_pairs"], cfg.cloud_method, figs / f"clouds_{d}.png")
        write_report(cfg.out, summary, sets, cfg)
    return summary


__all__ = ["METHOD_SPECS", "StudyConfig", "TARGET_DOMAINS", "frame_sets", "run_transfer_study", "summarise"]
