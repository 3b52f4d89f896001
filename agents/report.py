"""Write a comparison's results: a CSV of every evaluation, PNG plots, ``summary.json`` and a
self-contained report in Markdown (PNG files beside it) and HTML (PNGs embedded as base64).

The report leads with the answer (env steps to 90% of the state agent's final return per
observation mode), then the numbers behind it with 95% stratified-bootstrap CIs.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.artifacts import (
    EVALUATIONS_FILE,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)
from agents.stats import METRICS, Comparison

MODE_LABELS: dict[str, str] = {"repr": "representation (frozen encoder)", "pixels": "pixels", "state": "state"}
MODE_COLOURS: dict[str, str] = {"repr": "#0173b2", "pixels": "#de8f05", "state": "#029e73"}
CSV_COLUMNS: tuple[str, ...] = (
    "run", "obs", "seed", "timesteps", "mean_return", "normalised_return", "std_return", "success_rate", "mean_length", "episodes", "returns"
)
#: What the GQN paper found on Jaco (the comparison this study repeats), for the report.
PAPER_CONTEXT = (
    "For context: the GQN paper (Eslami et al., Science 2018) reports that a policy on the frozen GQN "
    "representation of Jaco reached convergence with about 4x fewer environment interactions than one on raw "
    "pixels, and that with a moving camera the raw-pixel agent failed to learn."
)


def steps_label(n: float) -> str:
    """Compact env-step count (``12k``, ``1.5M``; ``never`` for inf)."""
    if not math.isfinite(n):
        return "never"
    if n >= 1e6:
        return f"{n / 1e6:.3g}M"
    if n >= 1e3:
        return f"{n / 1e3:.3g}k"
    return f"{int(round(n))}"


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _ci_text(t: Sequence[float], digits: int = 3) -> str:
    return f"{_fmt(t[0], digits)} [{_fmt(t[1], digits)}, {_fmt(t[2], digits)}]"


def _steps_ci(t: Sequence[float], budget: float) -> str:
    point = steps_label(t[0]) if math.isfinite(t[0]) else f"not within {steps_label(budget)}"
    lo = steps_label(t[1]) if math.isfinite(t[1]) else f">{steps_label(budget)}"
    hi = steps_label(t[2]) if math.isfinite(t[2]) else f">{steps_label(budget)}"
    return f"{point} [{lo}, {hi}]"


# ---------------------------------------------------------------- document blocks
# The report is built once as a list of blocks and rendered to both Markdown and HTML, so the two
# always say the same thing (no Markdown library is installed; the formats needed are tiny).


@dataclass
class Block:
    """One element of the report: ``kind`` in h1, h2, p, strong, list, table, image, code."""

    kind: str
    text: str = ""
    items: "Sequence[str] | None" = None
    header: "Sequence[str] | None" = None
    rows: "Sequence[Sequence[str]] | None" = None
    path: "Path | None" = None


def render_markdown(blocks: list[Block], base: Path) -> str:
    """Markdown text; images are linked relative to ``base``."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "strong":
            out.append(f"**{b.text}**")
        elif b.kind == "list":
            out.append("\n".join(f"- {i}" for i in b.items or []))
        elif b.kind == "code":
            out.append(f"```\n{b.text}\n```")
        elif b.kind == "table":
            lines = ["| " + " | ".join(b.header or []) + " |", "|" + "---|" * len(b.header or [])]
            lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in b.rows or []]
            out.append("\n".join(lines))
        elif b.kind == "image":
            out.append(f"![{b.text}]({b.path.relative_to(base).as_posix()})")
        out.append("")
    return "\n".join(out)


def render_html(blocks: list[Block], title: str) -> str:
    """A single self-contained HTML page (images embedded as base64 PNG)."""
    e = html.escape
    body: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "strong":
            body.append(f'<p class="answer"><strong>{e(b.text)}</strong></p>')
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items or []) + "</ul>")
        elif b.kind == "code":
            body.append(f"<pre>{e(b.text)}</pre>")
        elif b.kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in b.header or [])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b.rows or [])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "image":
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{e(b.text)}" src="data:image/png;base64,{data}"><figcaption>{e(b.text)}</figcaption></figure>')
    style = (
        "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}.answer{font-size:1.15em;background:#eef6ff;padding:.8em;border-left:4px solid #0173b2}"
        "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}figcaption{color:#666;font-size:.9em}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt

    return plt


def plot_curves(cmp: Comparison, path: Path) -> Path:
    """IQM evaluation return vs env steps per mode, 95% CI bands, thin per-run lines, threshold."""
    from rliable import plot_utils

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = {m: MODE_COLOURS.get(m, "k") for m in cmp.modes}
    for m in cmp.modes:
        for c in cmp.curves[m]:
            ax.plot(cmp.grid, c, color=colours[m], alpha=0.2, linewidth=0.8)
    plot_utils.plot_sample_efficiency_curve(
        cmp.grid,
        {m: cmp.curve_iqm[m][0] for m in cmp.modes},
        {m: np.stack([cmp.curve_iqm[m][1], cmp.curve_iqm[m][2]]) for m in cmp.modes},
        algorithms=cmp.modes,
        colors=colours,
        xlabel="environment steps",
        ylabel="evaluation return (IQM)",
        ax=ax,
        labelsize="large",
        ticklabelsize="medium",
        marker=".",
    )
    ax.axhline(cmp.threshold_return, color="grey", linestyle="--", linewidth=1)
    ax.text(cmp.grid[0], cmp.threshold_return, f" {cmp.threshold:.0%} of reference", va="bottom", fontsize="small", color="grey")
    ax.legend([plt.Line2D([], [], color=colours[m], linewidth=2) for m in cmp.modes], [MODE_LABELS.get(m, m) for m in cmp.modes], loc="best")
    ax.set_title("Sample efficiency (IQM over seeds, 95% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_aggregates(cmp: Comparison, path: Path) -> Path:
    """Aggregate normalised final scores (IQM, mean, median, optimality gap) with 95% CIs."""
    from rliable import plot_utils

    plt = _pyplot()
    point = {m: np.array([cmp.aggregates[m][k][0] for k in METRICS]) for m in cmp.modes}
    interval = {m: np.array([[cmp.aggregates[m][k][1] for k in METRICS], [cmp.aggregates[m][k][2] for k in METRICS]]) for m in cmp.modes}
    fig, _ = plot_utils.plot_interval_estimates(
        point,
        interval,
        metric_names=list(METRICS),
        algorithms=cmp.modes,
        colors={m: MODE_COLOURS.get(m, "k") for m in cmp.modes},
        xlabel="normalised final score (0 = untrained, 1 = reference)",
        subfigure_width=3.4,
        row_height=0.6,
        xlabel_y_coordinate=-0.5 if len(cmp.modes) < 3 else -0.32,
        wspace=0.3,
        max_ticks=3,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_improvement(cmp: Comparison, path: Path) -> Path:
    """Probability of improvement P(X > Y) for each pair of modes, with 95% CIs."""
    from rliable import plot_utils

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 0.6 + 0.6 * len(cmp.improvement)))
    plot_utils.plot_probability_of_improvement(
        {k: v[0] for k, v in cmp.improvement.items()},
        {k: np.array([v[1], v[2]]) for k, v in cmp.improvement.items()},
        ax=ax,
        xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_steps_to_threshold(cmp: Comparison, path: Path) -> Path:
    """Env steps to reach the threshold per mode (bars, 95% CI whiskers; hatched: not reached)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.55 * len(cmp.modes)))
    cap = cmp.budget
    for i, m in enumerate(cmp.modes):
        p, lo, hi = cmp.steps_to_threshold[m]
        reached = math.isfinite(p)
        val = p if reached else cap
        ax.barh(i, val, color=MODE_COLOURS.get(m, "k"), alpha=0.8 if reached else 0.25, hatch=None if reached else "//")
        lo_v = lo if math.isfinite(lo) else cap
        hi_v = hi if math.isfinite(hi) else cap
        if reached:
            ax.errorbar(val, i, xerr=[[val - lo_v], [hi_v - val]], color="k", capsize=4)
        label_x = max(val, hi_v) if reached else val
        ax.text(label_x, i, "  " + (steps_label(p) if reached else f"not within {steps_label(cap)}"), va="center", fontsize="small")
    ax.set_yticks(range(len(cmp.modes)), [MODE_LABELS.get(m, m) for m in cmp.modes])
    ax.set_xlim(0, cap * 1.35)
    ax.set_xlabel(f"env steps to {cmp.threshold:.0%} of the reference return")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- report


def _answer(cmp: Comparison) -> str:
    s = cmp.steps_to_threshold
    ref = "the state agent's final return" if cmp.reference_source.startswith("IQM final return of the state") else "the reference return"
    frac = f"{cmp.threshold:.0%} of {ref}"
    budget = steps_label(cmp.budget)
    parts: list[str] = []
    if "repr" in s and "pixels" in s:
        r, p = s["repr"][0], s["pixels"][0]
        if math.isfinite(r) and math.isfinite(p):
            if r == p:
                parts.append(f"The representation and the pixel agents reached {frac} at the same evaluation ({steps_label(r)} env steps).")
            elif r < p:
                ratio = f"{p / r:.1f}x fewer interactions" if r > 0 else "no training at all (already there at step 0)"
                parts.append(
                    f"The representation agent reached {frac} after {steps_label(r)} env steps and the pixel agent after "
                    f"{steps_label(p)}: the representation needed {ratio}."
                )
            else:
                parts.append(
                    f"The pixel agent reached {frac} after {steps_label(p)} env steps, before the representation agent "
                    f"({steps_label(r)}): the representation did not help here."
                )
        elif math.isfinite(r):
            parts.append(
                f"The representation agent reached {frac} after {steps_label(r)} env steps; the pixel agent did not within "
                f"{budget} (so more than {cmp.budget / max(r, 1):.1f}x more interactions)."
            )
        elif math.isfinite(p):
            parts.append(f"The pixel agent reached {frac} after {steps_label(p)} env steps; the representation agent did not within {budget}.")
        else:
            parts.append(f"Neither the representation nor the pixel agent reached {frac} within {budget} env steps.")
        parts.append(
            f"Final normalised IQM (0 = untrained, 1 = reference): representation {_ci_text(cmp.aggregates['repr']['IQM'], 2)}, "
            f"pixels {_ci_text(cmp.aggregates['pixels']['IQM'], 2)}."
        )
    else:
        for m in cmp.modes:
            v = s[m][0]
            parts.append(f"{MODE_LABELS.get(m, m)}: {steps_label(v) if math.isfinite(v) else 'not within ' + budget} env steps to {frac}.")
    if "state" in s and ("repr" in s or "pixels" in s):
        v = s["state"][0]
        parts.append(f"The state agent itself got there after {steps_label(v)}." if math.isfinite(v) else "")
    if "repr,pixels" in cmp.improvement:
        p = cmp.improvement["repr,pixels"]
        parts.append(f"P(representation > pixels) on final scores = {_ci_text(p, 2)}.")
    if any("inconclusive" in n for n in cmp.notes):
        parts.insert(0, "Inconclusive: the state agent did not clearly learn within this budget, so the thresholds below are within noise.")
    return " ".join(x for x in parts if x)


def build_blocks(cmp: Comparison, setup: dict[str, Any], plots: dict[str, Path], out: Path) -> list[Block]:
    """The report's content."""
    env, camera = setup.get("env_id", "?"), setup.get("camera", "?")
    n_runs = {m: len(cmp.runs[m]) for m in cmp.modes}
    b: list[Block] = [Block("h1", f"Pixels vs representation vs state: {env} (camera: {camera})")]
    b.append(Block("strong", _answer(cmp)))
    b.append(Block("p", PAPER_CONTEXT))
    if cmp.notes:
        b.append(Block("list", items=[f"Caveat: {n}" for n in cmp.notes]))

    b.append(Block("h2", f"Env steps to {cmp.threshold:.0%} of the reference return"))
    b.append(
        Block(
            "p",
            f"Reference = {cmp.reference_source} ({cmp.reference:.4g}); untrained policy = {cmp.baseline:.4g} (mean step-0 "
            f"evaluation); threshold return = {cmp.threshold_return:.4g}. Steps are read from each mode's IQM curve over "
            f"seeds (95% CI: stratified bootstrap over runs, {cmp.reps} resamples); budget {steps_label(cmp.budget)} env steps.",
        )
    )
    rows = []
    for m in cmp.modes:
        per_run = ", ".join(steps_label(v) for v in cmp.run_steps_to_threshold[m])
        reached = sum(math.isfinite(v) for v in cmp.run_steps_to_threshold[m])
        rows.append([MODE_LABELS.get(m, m), _steps_ci(cmp.steps_to_threshold[m], cmp.budget), f"{reached}/{n_runs[m]}", per_run])
    b.append(Block("table", header=["obs", "steps (IQM curve) [95% CI]", "runs reaching it", "per run"], rows=rows))
    b.append(Block("image", "Env steps to the threshold", path=plots["steps"]))

    b.append(Block("h2", "Sample efficiency"))
    b.append(Block("p", "Evaluation return (deterministic policy, separate env instances) vs env steps: IQM over seeds with 95% CI bands; thin lines are single runs; dashed: the threshold."))
    b.append(Block("image", "Sample-efficiency curves", path=plots["curves"]))

    b.append(Block("h2", "Final performance"))
    rows = []
    for m in cmp.modes:
        a = cmp.aggregates[m]
        rows.append([MODE_LABELS.get(m, m), str(n_runs[m]), _ci_text(cmp.final_iqm[m])] + [_ci_text(a[k]) for k in METRICS])
    b.append(Block("table", header=["obs", "runs", "IQM return [95% CI]"] + [f"{k} (normalised)" for k in METRICS], rows=rows))
    b.append(Block("p", "Normalised score: 0 = untrained policy, 1 = reference. Optimality gap = mean shortfall below 1 (lower is better)."))
    b.append(Block("image", "Aggregate metrics of normalised final scores", path=plots["aggregates"]))

    if cmp.improvement:
        b.append(Block("h2", "Probability of improvement"))
        rows = [[k.replace(",", " > "), _ci_text(v, 2)] for k, v in cmp.improvement.items()]
        b.append(Block("table", header=["P(X > Y) on final scores", "estimate [95% CI]"], rows=rows))
        b.append(Block("image", "Probability of improvement", path=plots["improvement"]))

    b.append(Block("h2", "Runs"))
    rows = []
    for m in cmp.modes:
        for r in cmp.runs[m]:
            rows.append([r.name, m, str(r.seed), _fmt(r.returns[-1], 4), str(int(r.timesteps[-1])), _fmt(r.done.get("steps_per_s", float("nan")), 4), _fmt(r.done.get("wall_s", float("nan")), 4)])
    b.append(Block("table", header=["run", "obs", "seed", "final return", "env steps", "steps/s", "wall s"], rows=rows))

    b.append(Block("h2", "Setup"))
    b.append(Block("table", header=["setting", "value"], rows=[[k, str(v)] for k, v in setup.items()]))
    b.append(
        Block(
            "list",
            items=[
                "Every evaluation of every run: evaluations.csv; every number above: summary.json.",
                f"TensorBoard: tensorboard --logdir {out / 'runs'}",
                f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.",
            ],
        )
    )
    return b


def _finite_or_none(x: float) -> "float | None":
    return float(x) if x is not None and math.isfinite(x) else None


def summary_dict(cmp: Comparison, setup: dict[str, Any]) -> dict[str, Any]:
    """Machine-readable numbers of the comparison (non-finite steps -> ``null`` = not reached)."""
    return {
        "setup": setup,
        "modes": cmp.modes,
        "answer": _answer(cmp),
        "baseline_return": cmp.baseline,
        "reference_return": cmp.reference,
        "reference_source": cmp.reference_source,
        "threshold": cmp.threshold,
        "threshold_return": cmp.threshold_return,
        "budget_steps": cmp.budget,
        "bootstrap_reps": cmp.reps,
        "steps_to_threshold": {m: [_finite_or_none(v) for v in t] for m, t in cmp.steps_to_threshold.items()},
        "run_steps_to_threshold": {m: [_finite_or_none(v) for v in t] for m, t in cmp.run_steps_to_threshold.items()},
        "final_return_iqm": {m: list(t) for m, t in cmp.final_iqm.items()},
        "aggregates_normalised": {m: {k: list(v) for k, v in a.items()} for m, a in cmp.aggregates.items()},
        "probability_of_improvement": {k: list(v) for k, v in cmp.improvement.items()},
        "runs": {m: [{"name": r.name, "seed": r.seed, "final_return": float(r.returns[-1])} for r in cmp.runs[m]] for m in cmp.modes},
        "notes": cmp.notes,
    }


def write_evaluations_csv(cmp: Comparison, path: Path) -> Path:
    """Every evaluation of every run, with the normalised return added."""
    rows: list[dict[str, Any]] = []
    for m in cmp.modes:
        for r in cmp.runs[m]:
            with open(Path(r.path) / EVALUATIONS_FILE, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    ret = float(row["mean_return"])
                    rows.append({**row, "run": r.name, "obs": m, "seed": r.seed, "normalised_return": f"{(ret - cmp.baseline) / cmp.scale:.6g}"})
    write_csv_atomic(path, CSV_COLUMNS, rows)
    return path


def write_report(cmp: Comparison, out: "str | Path", setup: dict[str, Any]) -> dict[str, Path]:
    """Write evaluations.csv, plots, summary.json, report.md and report.html into ``out``."""
    out = Path(out)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "curves": plot_curves(cmp, plots_dir / "curves.png"),
        "aggregates": plot_aggregates(cmp, plots_dir / "aggregates.png"),
        "steps": plot_steps_to_threshold(cmp, plots_dir / "steps_to_threshold.png"),
    }
    if cmp.improvement:
        plots["improvement"] = plot_improvement(cmp, plots_dir / "improvement.png")
    files = {"csv": write_evaluations_csv(cmp, out / "evaluations.csv")}
    write_json_atomic(out / "summary.json", summary_dict(cmp, setup))
    files["summary"] = out / "summary.json"
    blocks = build_blocks(cmp, setup, plots, out)
    write_text_atomic(out / "report.md", render_markdown(blocks, out))
    title = f"Pixels vs representation vs state: {setup.get('env_id', '')}"
    write_text_atomic(out / "report.html", render_html(blocks, title))
    files.update({"markdown": out / "report.md", "html": out / "report.html", **{f"plot_{k}": v for k, v in plots.items()}})
    return files
