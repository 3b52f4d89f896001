"""Write a comparison's results: a CSV of every evaluation, PNG plots, ``summary.json`` and a
self-contained report in Markdown (PNG files beside it) and HTML (PNGs embedded as base64).

The report leads with a one-paragraph answer (normalisation, budget, seeds, conclusion) and
follows the honesty rules decided in :mod:`agents.stats`: an arm with fewer than
:data:`~agents.stats.MIN_RUNS` runs shows its per-run values and "n < 5 runs: no aggregate
claim" instead of an IQM; overlapping CIs read "no significant difference at this budget"; "X
beats Y" appears only when the final-score CIs are disjoint and the P(X > Y) CI excludes 0.5.
"""

from __future__ import annotations

import base64
import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.artifacts import (
    EVALUATIONS_FILE,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)
from agents.stats import (
    HEADLINE_RATIO,
    METRICS,
    MIN_RUNS,
    Comparison,
    PairVerdict,
    Ratio,
    arm_rank,
)

#: What the built-in arms are (the report's "Arms" table); other arms are shown by name.
ARM_DESCRIPTIONS: dict[str, str] = {
    "pixels": "NatureCNN on the env frames",
    "pixels+viewpoint": "env frames + 7-d camera viewpoint (MultiInputPolicy)",
    "repr": "frozen encoder features (the default GQN encoder)",
    "repr-niso": "frozen NISO encoder features",
    "repr-untrained": "GQN encoder architecture with untrained weights (control: architecture without learning)",
    "state": "the env's state vector",
}
#: Fixed colours of the built-in arms (colour-blind palette); others take the rest in order.
ARM_COLOURS: dict[str, str] = {
    "repr": "#0173b2",
    "pixels": "#de8f05",
    "state": "#029e73",
    "repr-untrained": "#949494",
    "pixels+viewpoint": "#d55e00",
    "repr-niso": "#cc78bc",
}
_SPARE_COLOURS = ("#ca9161", "#fbafe4", "#56b4e9", "#ece133", "#000000")
CSV_COLUMNS: tuple[str, ...] = (
    "run",
    "arm",
    "obs",
    "seed",
    "timesteps",
    "mean_return",
    "normalised_return",
    "std_return",
    "success_rate",
    "mean_length",
    "episodes",
    "returns",
)
NO_CLAIM = f"n < {MIN_RUNS} runs: no aggregate claim"
NO_DIFFERENCE = "no significant difference at this budget"
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
    return f"{round(n)}"


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """A colour per arm (fixed for built-in names)."""
    spare = iter(c for c in _SPARE_COLOURS)
    return {a: ARM_COLOURS.get(a) or next(spare, "#333333") for a in arms}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _ci_text(t: Sequence[float], digits: int = 3) -> str:
    return f"{_fmt(t[0], digits)} [{_fmt(t[1], digits)}, {_fmt(t[2], digits)}]"


def _steps_text(v: float, budget: float) -> str:
    """Env steps, or ``> budget`` when not reached within the budget (never a made-up number)."""
    return steps_label(v) if math.isfinite(v) else f"> {steps_label(budget)}"


def steps_ci_text(t: Sequence[float], budget: float) -> str:
    """``point [low, high]`` of steps to threshold; an end beyond the budget reads ``> budget``."""
    return f"{_steps_text(t[0], budget)} [{_steps_text(t[1], budget)}, {_steps_text(t[2], budget)}]"


def _bound_text(lo: float, hi: float) -> str:
    if lo == hi:
        return "unbounded" if math.isinf(lo) else f"{lo:.2g}x"
    if math.isinf(hi):
        return "undetermined" if lo == 0 else f"> {lo:.2g}x"
    return f"< {hi:.2g}x" if lo == 0 else f"{lo:.2g}x to {hi:.2g}x"


def ratio_text(r: Ratio) -> str:
    """``point [95% CI low, high]`` of a steps ratio; censored ends read ``> x`` or ``unbounded``."""
    lo, hi = r.ci
    hi_text = "unbounded" if math.isinf(hi) else f"{hi:.2g}x"
    return f"{_bound_text(*r.point)} [95% CI {lo:.2g}x, {hi_text}]"


def ratio_vs_headline(r: Ratio) -> str:
    """How a pixels/repr steps ratio stands against the study's ``>= 4x`` headline."""
    lo, hi = r.ci
    if lo >= HEADLINE_RATIO:
        return f"supports >= {HEADLINE_RATIO:g}x (CI lower end {lo:.2g}x)"
    if hi < HEADLINE_RATIO:
        return f"rules out {HEADLINE_RATIO:g}x (CI upper end {hi:.2g}x)"
    return f"inconclusive about {HEADLINE_RATIO:g}x (the CI includes {HEADLINE_RATIO:g}x and smaller ratios)"


def _runs_text(values: Sequence[float], digits: int = 3) -> str:
    return ", ".join(_fmt(v, digits) for v in values)


def _seeds_text(seeds: Sequence[int]) -> str:
    s = sorted(seeds)
    if s and s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"{s[0]}-{s[-1]}"
    return ", ".join(map(str, s))


# ---------------------------------------------------------------- document blocks
# The report is built once as a list of blocks, written as Markdown, and the HTML page is that same
# Markdown converted by the `markdown` library (tables, attribute lists, fenced code) inside a
# Jinja2 page template, so the two always say the same thing.

_HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>{{ style }}</style></head><body>
{{ body | safe }}
</body></html>
"""

_HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    "th{background:#f3f3f3}img{max-width:100%}"
    ".answer{font-size:1.05em;background:#eef6ff;padding:.8em;border-left:4px solid #0173b2}"
    "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}"
)


@dataclass
class Block:
    """One element of the report: ``kind`` in h1, h2, p, strong, list, table, image, code."""

    kind: str
    text: str = ""
    items: Sequence[str] | None = None
    header: Sequence[str] | None = None
    rows: Sequence[Sequence[str]] | None = None
    path: Path | None = None


def _cell(text: Any) -> str:
    # A "|" inside a cell would end it; a newline would end the row.
    return str(text).replace("|", "/").replace("\n", " ")


def _markdown_block(b: Block, image_src: Callable[[Path], str], attributes: bool) -> str:
    if b.kind == "h1":
        return f"# {b.text}"
    if b.kind == "h2":
        return f"## {b.text}"
    if b.kind == "p":
        return b.text
    if b.kind == "strong":
        # The attribute list styles the answer box in HTML; plain Markdown readers would show it.
        return f"**{b.text}**" + ("\n{: .answer}" if attributes else "")
    if b.kind == "list":
        return "\n".join(f"- {i}" for i in b.items or [])
    if b.kind == "code":
        return f"```\n{b.text}\n```"
    if b.kind == "table":
        header = list(b.header or [])
        lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in b.rows or []]
        return "\n".join(lines)
    if b.kind == "image":
        return f"![{b.text}]({image_src(b.path)})"
    raise ValueError(f"unknown block kind {b.kind!r}; allowed: h1, h2, p, strong, list, table, image, code")


def render_markdown(
    blocks: list[Block], base: Path, image_src: Callable[[Path], str] | None = None, attributes: bool = False
) -> str:
    """Markdown text; images are linked relative to ``base`` unless ``image_src`` maps them;
    ``attributes`` adds ``attr_list`` classes (for the HTML conversion)."""
    src = image_src or (lambda path: path.relative_to(base).as_posix())
    return "\n\n".join(_markdown_block(b, src, attributes) for b in blocks) + "\n"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(blocks: list[Block], title: str) -> str:
    """A single self-contained HTML page: the report's Markdown, images embedded as base64 PNG."""
    import jinja2
    import markdown

    text = render_markdown(blocks, Path("."), image_src=_data_uri, attributes=True)
    body = markdown.markdown(text, extensions=["tables", "attr_list", "fenced_code"], output_format="html")
    page = jinja2.Environment(autoescape=True).from_string(_HTML_PAGE)
    return page.render(title=title, style=_HTML_STYLE, body=body)


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt

    return plt


def _powered(cmp: Comparison) -> list[str]:
    return [a for a in cmp.arms if not cmp.underpowered[a]]


def _legend_label(cmp: Comparison, a: str) -> str:
    return f"{a} (n={len(cmp.runs[a])}, runs only)" if cmp.underpowered[a] else f"{a} (n={len(cmp.runs[a])})"


def plot_curves(cmp: Comparison, path: Path) -> Path:
    """Normalised score vs env steps: thin per-run lines for every arm; IQM with 95% CI band only
    for arms with enough runs; dashed: the threshold."""
    plt = _pyplot()
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = arm_colours(cmp.arms)
    for a in cmp.arms:
        for c in cmp.curves[a]:
            ax.plot(cmp.grid, c, color=colours[a], alpha=0.6 if cmp.underpowered[a] else 0.2, linewidth=0.8)
    powered = _powered(cmp)
    if powered:
        plot_utils.plot_sample_efficiency_curve(
            cmp.grid,
            {a: cmp.curve_iqm[a][0] for a in powered},
            {a: np.stack([cmp.curve_iqm[a][1], cmp.curve_iqm[a][2]]) for a in powered},
            algorithms=powered,
            colors=colours,
            xlabel="environment steps",
            ylabel="normalised score (IQM)",
            ax=ax,
            labelsize="large",
            ticklabelsize="medium",
            marker=".",
        )
    else:
        ax.set_xlabel("environment steps")
        ax.set_ylabel("normalised score (single runs)")
    ax.axhline(cmp.threshold, color="grey", linestyle="--", linewidth=1)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.text(cmp.grid[0], cmp.threshold, f" threshold {cmp.threshold:g}", va="bottom", fontsize="small", color="grey")
    ax.text(cmp.grid[0], 1.0, " expert = 1", va="bottom", fontsize="small", color="grey")
    ax.legend(
        [plt.Line2D([], [], color=colours[a], linewidth=2, alpha=0.6 if cmp.underpowered[a] else 1) for a in cmp.arms],
        [_legend_label(cmp, a) for a in cmp.arms],
        loc="best",
        fontsize="small",
    )
    ax.set_title("Sample efficiency (IQM over runs, 95% bootstrap CI; thin: single runs)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_aggregates(cmp: Comparison, path: Path) -> Path | None:
    """Aggregate normalised final scores with 95% CIs, for arms with enough runs (None if none)."""
    powered = _powered(cmp)
    if not powered:
        return None
    plt = _pyplot()
    from rliable import plot_utils

    point = {a: np.array([cmp.aggregates[a][k][0] for k in METRICS]) for a in powered}
    interval = {a: np.array([[cmp.aggregates[a][k][j] for k in METRICS] for j in (1, 2)]) for a in powered}
    fig, _ = plot_utils.plot_interval_estimates(
        point,
        interval,
        metric_names=list(METRICS),
        algorithms=powered,
        colors=arm_colours(cmp.arms),
        xlabel="normalised final score (0 = zero-action, 1 = expert)",
        subfigure_width=3.4,
        row_height=0.6,
        xlabel_y_coordinate=-0.5 if len(powered) < 3 else -0.32 if len(powered) < 5 else -0.22,
        wspace=0.3,
        max_ticks=3,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_profiles(cmp: Comparison, path: Path) -> Path:
    """Performance profiles: fraction of runs with normalised final score > tau; 95% CI bands
    only for arms with enough runs (dashed: fewer runs, the plain empirical fraction)."""
    plt = _pyplot()
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        {a: cmp.profiles[a][0] for a in cmp.arms},
        cmp.profile_taus,
        performance_profile_cis={a: (cmp.profiles[a][1], cmp.profiles[a][2]) for a in _powered(cmp)},
        colors=arm_colours(cmp.arms),
        linestyles={a: "dashed" if cmp.underpowered[a] else "solid" for a in cmp.arms},
        xlabel=r"normalised final score $\tau$ (1 = expert)",
        ylabel=r"fraction of runs with score $> \tau$",
        ax=ax,
    )
    colours = arm_colours(cmp.arms)
    handles = [
        plt.Line2D([], [], color=colours[a], linewidth=2, linestyle="dashed" if cmp.underpowered[a] else "solid")
        for a in cmp.arms
    ]
    ax.legend(handles, [_legend_label(cmp, a) for a in cmp.arms], loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_improvement(cmp: Comparison, path: Path) -> Path | None:
    """P(X > Y) with 95% CIs for pairs of arms that both have enough runs (None if none)."""
    keys = [k for k, v in cmp.verdicts.items() if v.final != "underpowered"]
    if not keys:
        return None
    plt = _pyplot()
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(5.5, 0.6 + 0.6 * len(keys)))
    plot_utils.plot_probability_of_improvement(
        {k: cmp.improvement[k][0] for k in keys},
        {k: np.array([cmp.improvement[k][1], cmp.improvement[k][2]]) for k in keys},
        ax=ax,
        xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_steps_to_threshold(cmp: Comparison, path: Path) -> Path:
    """Env steps to the threshold per arm: every run as a dot (at the right edge when it never
    stayed above); the IQM-curve value with its 95% CI only for arms with enough runs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 0.9 + 0.55 * len(cmp.arms)))
    cap = cmp.budget * 1.08  # where "beyond the budget" is drawn
    colours = arm_colours(cmp.arms)
    for i, a in enumerate(cmp.arms):
        vals = [v if math.isfinite(v) else cap for v in cmp.run_steps_to_threshold[a]]
        ax.scatter(vals, [i] * len(vals), color=colours[a], alpha=0.7, s=22, zorder=3)
        if cmp.underpowered[a]:
            ax.text(cmp.budget * 1.12, i, f"  {NO_CLAIM}", va="center", fontsize="x-small")
            continue
        p, lo, hi = (v if math.isfinite(v) else cap for v in cmp.steps_to_threshold[a])
        ax.plot([lo, hi], [i, i], color="k", linewidth=1.5, zorder=2)
        ax.scatter([p], [i], color="k", marker="D", s=30, zorder=4)
        label = "  " + steps_ci_text(cmp.steps_to_threshold[a], cmp.budget)
        ax.text(cmp.budget * 1.12, i, label, va="center", fontsize="x-small")
    ax.axvline(cmp.budget, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(cmp.arms)), cmp.arms)
    ax.set_xlim(0, cmp.budget * 1.9)
    xlabel = f"env steps until the IQM curve stays >= {cmp.threshold:g} (dotted: budget; beyond it: never)"
    ax.set_xlabel(xlabel, fontsize="small")
    ax.set_title("dots: single runs; diamond and bar: IQM curve with 95% CI", fontsize="small")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- claims


def headline_pairs(cmp: Comparison) -> list[str]:
    """Pair keys the answer speaks about: ``repr*``/``pixels*`` vs pixels, ``repr*`` vs repr-untrained."""
    return [f"{x},{y}" for x, y in cmp.pairs if y in ("pixels", "repr-untrained") and arm_rank(x) < arm_rank("state")]


def final_sentence(cmp: Comparison, v: PairVerdict) -> str:
    """The claim about final normalised scores of a pair, under the honesty rules."""
    x, y = v.x, v.y
    if v.final == "underpowered":
        return f"{x} vs {y}: {NO_CLAIM}."
    p = cmp.improvement[f"{x},{y}"]
    numbers = (
        f"IQM {_ci_text(cmp.aggregates[x]['IQM'], 2)} vs {_ci_text(cmp.aggregates[y]['IQM'], 2)}; "
        f"P({x} > {y}) = {_ci_text(p, 2)}"
    )
    if v.final in ("x", "y"):
        win, lose = (x, y) if v.final == "x" else (y, x)
        return f"{win} beats {lose} on final normalised score ({numbers})."
    why = "CIs overlap" if not v.final_disjoint else "IQM CIs are disjoint but the P(X > Y) CI includes 0.5"
    return f"{x} vs {y}: {NO_DIFFERENCE} in final normalised score ({why}; {numbers})."


def steps_sentence(cmp: Comparison, v: PairVerdict) -> str:
    """The claim about env steps to threshold of a pair, under the honesty rules."""
    x, y = v.x, v.y
    if v.steps == "underpowered":
        return ""
    sx, sy = cmp.steps_to_threshold[x], cmp.steps_to_threshold[y]
    numbers = f"{steps_ci_text(sx, cmp.budget)} vs {steps_ci_text(sy, cmp.budget)}"
    if v.steps in ("x", "y"):
        win, lose = (x, y) if v.steps == "x" else (y, x)
        return f"{win} reached {cmp.threshold:g} in fewer env steps than {lose} ({numbers}; CIs disjoint)."
    if not any(math.isfinite(s) for s in (*sx, *sy)):
        return (
            f"Neither {x} nor {y} stayed >= {cmp.threshold:g} within {steps_label(cmp.budget)} env steps: "
            f"{NO_DIFFERENCE}."
        )
    return f"{x} vs {y}: {NO_DIFFERENCE} in env steps to {cmp.threshold:g} (CIs overlap: {numbers})."


def answer(cmp: Comparison) -> str:
    """The one-paragraph answer: normalisation, budget, seeds, conclusion under the honesty rules."""
    episodes = cmp.reference_episodes
    ep_text = f"over the same {episodes} evaluation episodes" if episodes else "over the same evaluation episodes"
    if not episodes:
        ep_text += " (count not recorded)"
    run_eps = sorted({r.eval_episodes for rs in cmp.runs.values() for r in rs if r.eval_episodes is not None})
    parts = [
        f"Normalised score: 1 = the scripted expert's mean return ({cmp.expert_return:.4g}), 0 = the zero-action "
        f"policy's ({cmp.zero_return:.4g}), both {ep_text}"
        + (
            f"; each agent evaluation point is the mean of {', '.join(map(str, run_eps))} episodes." if run_eps else "."
        ),
    ]
    seeds = {a: [r.seed for r in cmp.runs[a]] for a in cmp.arms}
    if len({tuple(sorted(s)) for s in seeds.values()}) == 1:
        seed_text = f"seeds {_seeds_text(seeds[cmp.arms[0]])} ({len(seeds[cmp.arms[0]])} runs per arm)"
    else:
        seed_text = "seeds " + "; ".join(f"{a}: {_seeds_text(s)}" for a, s in seeds.items())
    parts.append(
        f"Budget: {steps_label(cmp.budget)} env steps per run; {seed_text}; 95% CIs from {cmp.reps} stratified "
        f"bootstrap resamples (seed {cmp.seed}); headline = env steps until the IQM curve stays >= {cmp.threshold:g}."
    )
    small = [a for a in cmp.arms if cmp.underpowered[a]]
    if small:
        counts = ", ".join(
            f"{a} {sum(math.isfinite(v) for v in cmp.run_steps_to_threshold[a])}/{len(cmp.runs[a])}" for a in small
        )
        parts.append(
            f"{', '.join(small)}: {NO_CLAIM}; descriptively, runs whose own curve stays >= {cmp.threshold:g} within "
            f"the budget: {counts} (per-run values below)."
        )
    keys = headline_pairs(cmp) or [f"{x},{y}" for x, y in cmp.pairs]
    for k in keys:
        v = cmp.verdicts[k]
        if v.final == "underpowered":
            continue
        parts.append(final_sentence(cmp, v))
        parts.append(steps_sentence(cmp, v))
        if v.y == "pixels" and v.x in cmp.steps_ratio:
            r = cmp.steps_ratio[v.x]
            parts.append(f"Env steps to {cmp.threshold:g}, pixels / {v.x}: {ratio_text(r)} ({ratio_vs_headline(r)}).")
    powered = [a for a in cmp.arms if not cmp.underpowered[a]]
    if not any(cmp.verdicts[k].final != "underpowered" for k in keys):
        if len(powered) == 1:
            a = powered[0]
            parts.append(
                f"{a}: final normalised IQM {_ci_text(cmp.aggregates[a]['IQM'], 3)}, env steps to {cmp.threshold:g} "
                f"{steps_ci_text(cmp.steps_to_threshold[a], cmp.budget)}."
            )
        elif keys:
            parts.append("No headline comparison can be claimed at this number of runs.")
    if "state" in powered:
        parts.append(
            f"State agent: env steps to {cmp.threshold:g} {steps_ci_text(cmp.steps_to_threshold['state'], cmp.budget)}."
        )
    return " ".join(p for p in parts if p)


# ---------------------------------------------------------------- report


def _short_verdict(v: PairVerdict, outcome: str, verb: str) -> str:
    if outcome == "x":
        return f"{v.x} {verb} {v.y}"
    if outcome == "y":
        return f"{v.y} {verb} {v.x}"
    return NO_CLAIM if outcome == "underpowered" else NO_DIFFERENCE


def _aggregate_cells(cmp: Comparison, a: str) -> list[str]:
    if cmp.underpowered[a]:
        return [NO_CLAIM] + [""] * len(METRICS)
    return [_ci_text(cmp.final_iqm[a])] + [_ci_text(cmp.aggregates[a][k]) for k in METRICS]


def build_blocks(cmp: Comparison, setup: dict[str, Any], plots: dict[str, Path], out: Path) -> list[Block]:
    """The report's content."""
    env, camera = setup.get("env_id", "?"), setup.get("camera", "?")
    n = {a: len(cmp.runs[a]) for a in cmp.arms}
    budget = cmp.budget
    b: list[Block] = [Block("h1", f"Which observations learn faster: {env} (camera: {camera})")]
    b.append(Block("strong", answer(cmp)))
    b.append(Block("p", PAPER_CONTEXT))
    if cmp.notes:
        b.append(Block("list", items=[f"Caveat: {x}" for x in cmp.notes]))

    b.append(Block("h2", "Arms"))
    b.append(
        Block(
            "table",
            header=["arm", "what the agent sees", "obs mode", "runs", "seeds"],
            rows=[
                [
                    a,
                    ARM_DESCRIPTIONS.get(a, a),
                    ", ".join(sorted({r.obs for r in cmp.runs[a]})),
                    str(n[a]),
                    _seeds_text([r.seed for r in cmp.runs[a]]),
                ]
                for a in cmp.arms
            ],
        )
    )

    b.append(Block("h2", f"Env steps to normalised score {cmp.threshold:g}"))
    b.append(
        Block(
            "p",
            (
                f"Steps = the first evaluation after which the arm's IQM curve (over runs) stays >= {cmp.threshold:g} "
                "at every later evaluation, not the first noisy crossing. 95% CI: stratified bootstrap over whole runs "
                f"({cmp.reps} resamples); '> {steps_label(budget)}' = not within the budget of {steps_label(budget)} "
                "env steps."
            ),
        )
    )
    rows = []
    for a in cmp.arms:
        per_run = ", ".join(_steps_text(v, budget) for v in cmp.run_steps_to_threshold[a])
        reached = sum(math.isfinite(v) for v in cmp.run_steps_to_threshold[a])
        est = NO_CLAIM if cmp.underpowered[a] else steps_ci_text(cmp.steps_to_threshold[a], budget)
        rows.append([a, str(n[a]), est, f"{reached}/{n[a]}", per_run])
    b.append(
        Block(
            "table", header=["arm", "runs", "steps (IQM curve) [95% CI]", "runs that stay above", "per run"], rows=rows
        )
    )
    if cmp.steps_ratio:
        rows = []
        for a, r in cmp.steps_ratio.items():
            if cmp.underpowered[a] or cmp.underpowered["pixels"]:
                rows.append([f"pixels / {a}", NO_CLAIM, ""])
            else:
                rows.append([f"pixels / {a}", ratio_text(r), ratio_vs_headline(r)])
        b.append(
            Block(
                "p",
                (
                    "Ratio of env steps to the threshold, pixels over each representation arm (both arms resampled "
                    "independently). A bound ('> x') appears where pixels did not stay above within the budget; "
                    "'unbounded' where some resamples never did. The study's headline asks whether it is >= "
                    f"{HEADLINE_RATIO:g}x."
                ),
            )
        )
        b.append(Block("table", header=["ratio", "estimate [95% CI]", f"vs {HEADLINE_RATIO:g}x"], rows=rows))
    b.append(Block("image", "Env steps to the threshold", path=plots["steps"]))

    b.append(Block("h2", "Sample efficiency"))
    b.append(
        Block(
            "p",
            (
                "Normalised evaluation score (deterministic policy on the fixed evaluation episodes) vs env steps: IQM "
                f"over runs with 95% CI bands (arms with >= {MIN_RUNS} runs); thin lines are single runs; dashed: the "
                "threshold; dotted: the expert."
            ),
        )
    )
    b.append(Block("image", "Sample-efficiency curves", path=plots["curves"]))

    b.append(Block("h2", "Final performance"))
    rows = [[a, str(n[a])] + _aggregate_cells(cmp, a) + [_runs_text(cmp.normalised_final[a])] for a in cmp.arms]
    header = ["arm", "runs", "IQM return [95% CI]"] + [f"{k} (normalised)" for k in METRICS] + ["per run (normalised)"]
    b.append(Block("table", header=header, rows=rows))
    b.append(
        Block(
            "p",
            (
                f"Normalised score: (return - {cmp.zero_return:.4g}) / ({cmp.expert_return:.4g} - "
                f"{cmp.zero_return:.4g}); 0 = zero-action policy, 1 = scripted expert. Optimality gap = mean shortfall "
                "below the expert (lower is better). Median over runs."
            ),
        )
    )
    if "aggregates" in plots:
        b.append(Block("image", "Aggregate metrics of normalised final scores", path=plots["aggregates"]))
    b.append(Block("image", "Performance profiles of normalised final scores", path=plots["profiles"]))

    if cmp.pairs:
        b.append(Block("h2", "Comparisons"))
        b.append(
            Block(
                "p",
                (
                    "'X beats Y' only when the final-IQM CIs are disjoint and the CI of P(X > Y) (a random run of X "
                    f"scores above one of Y) excludes 0.5; otherwise '{NO_DIFFERENCE}'. Faster only when the steps CIs "
                    "are disjoint."
                ),
            )
        )
        rows = []
        for x, y in cmp.pairs:
            k, v = f"{x},{y}", cmp.verdicts[f"{x},{y}"]
            if v.final == "underpowered":
                rows.append([f"{x} > {y}", NO_CLAIM, NO_CLAIM, NO_CLAIM])
            else:
                rows.append(
                    [
                        f"{x} > {y}",
                        _ci_text(cmp.improvement[k], 2),
                        _short_verdict(v, v.final, "beats"),
                        _short_verdict(v, v.steps, f"reached {cmp.threshold:g} in fewer env steps than"),
                    ]
                )
        b.append(
            Block("table", header=["P(X > Y)", "estimate [95% CI]", "final normalised score", "env steps"], rows=rows)
        )
        if "improvement" in plots:
            b.append(Block("image", "Probability of improvement", path=plots["improvement"]))

    b.append(Block("h2", "Runs"))
    rows = []
    for a in cmp.arms:
        for r, fin, nf in zip(cmp.runs[a], cmp.final[a], cmp.normalised_final[a], strict=True):
            rows.append(
                [
                    r.name,
                    a,
                    str(r.seed),
                    _fmt(fin, 4),
                    _fmt(nf, 3),
                    str(int(r.timesteps[-1])),
                    _fmt(r.done.get("steps_per_s", float("nan")), 4),
                    _fmt(r.done.get("wall_s", float("nan")), 4),
                ]
            )
    header = ["run", "arm", "seed", "final return", "normalised", "env steps", "steps/s", "wall s"]
    b.append(Block("table", header=header, rows=rows))

    b.append(Block("h2", "Setup"))
    ref_rows = [
        ["expert return (score 1)", f"{cmp.expert_return:.6g}"],
        ["zero-action return (score 0)", f"{cmp.zero_return:.6g}"],
        ["reference episodes", str(cmp.reference_episodes or "not recorded")],
        ["reference", cmp.reference_source],
    ]
    b.append(Block("table", header=["setting", "value"], rows=ref_rows + [[k, str(v)] for k, v in setup.items()]))
    b.append(
        Block(
            "list",
            items=[
                "Every evaluation of every run: evaluations.csv; every number above: summary.json; the reference: "
                "reference.json.",
                f"TensorBoard: tensorboard --logdir {out / 'runs'}",
                f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.",
            ],
        )
    )
    return b


def _num(x: float) -> float | None:
    """JSON number; non-finite (not within the budget / unbounded) -> ``null``."""
    return float(x) if x is not None and math.isfinite(x) else None


def summary_dict(cmp: Comparison, setup: dict[str, Any]) -> dict[str, Any]:
    """Machine-readable numbers of the comparison. ``null`` steps = not within ``budget_steps``;
    ``null`` ratio ends = unbounded. Arms with ``underpowered: true`` (< MIN_RUNS runs) carry
    numbers the report makes no claim from."""
    ref = cmp.reference
    return {
        "setup": setup,
        "arms": cmp.arms,
        "answer": answer(cmp),
        "normalisation": {
            "formula": "(return - zero_return) / (expert_return - zero_return)",
            "expert_return": cmp.expert_return,
            "zero_return": cmp.zero_return,
            "evaluation_episodes": cmp.reference_episodes,
            "source": cmp.reference_source,
        },
        "reference": ref.to_dict() if hasattr(ref, "to_dict") else None,
        "threshold": cmp.threshold,
        "budget_steps": cmp.budget,
        "bootstrap_reps": cmp.reps,
        "bootstrap_seed": cmp.seed,
        "min_runs_for_claims": MIN_RUNS,
        "underpowered": dict(cmp.underpowered),
        "steps_to_threshold": {a: [_num(v) for v in t] for a, t in cmp.steps_to_threshold.items()},
        "run_steps_to_threshold": {a: [_num(v) for v in t] for a, t in cmp.run_steps_to_threshold.items()},
        "steps_ratio_pixels_over": {
            a: {
                "point": [_num(v) for v in r.point],
                "ci": [_num(v) for v in r.ci],
                "underpowered": cmp.underpowered[a] or cmp.underpowered["pixels"],
            }
            for a, r in cmp.steps_ratio.items()
        },
        "final_return_iqm": {a: list(t) for a, t in cmp.final_iqm.items()},
        "aggregates_normalised": {
            a: {**{k: list(v) for k, v in g.items()}, "underpowered": cmp.underpowered[a]}
            for a, g in cmp.aggregates.items()
        },
        "probability_of_improvement": {k: list(v) for k, v in cmp.improvement.items()},
        "verdicts": {
            k: {
                "final": v.final,
                "steps": v.steps,
                "final_text": final_sentence(cmp, v),
                "steps_text": steps_sentence(cmp, v),
            }
            for k, v in cmp.verdicts.items()
        },
        "performance_profile": {
            "tau": cmp.profile_taus.tolist(),
            **{
                a: {"point": p.tolist(), "low": lo.tolist(), "high": hi.tolist()}
                for a, (p, lo, hi) in cmp.profiles.items()
            },
        },
        "runs": {
            a: [
                {"name": r.name, "seed": r.seed, "obs": r.obs, "final_return": float(f), "normalised_final": float(nf)}
                for r, f, nf in zip(cmp.runs[a], cmp.final[a], cmp.normalised_final[a], strict=True)
            ]
            for a in cmp.arms
        },
        "notes": cmp.notes,
    }


def write_evaluations_csv(cmp: Comparison, path: Path) -> Path:
    """Every evaluation of every run, with its arm and normalised return added."""
    scale = cmp.expert_return - cmp.zero_return
    rows: list[dict[str, Any]] = []
    for a in cmp.arms:
        for r in cmp.runs[a]:
            src = Path(r.path) / EVALUATIONS_FILE if r.path is not None else None
            if src is not None and src.is_file():
                with open(src, newline="", encoding="utf-8") as f:
                    evals = list(csv.DictReader(f))
            else:  # a run built in memory: its recorded numbers only
                evals = [
                    {"timesteps": int(t), "mean_return": float(v)} for t, v in zip(r.timesteps, r.returns, strict=True)
                ]
            for row in evals:
                norm = (float(row["mean_return"]) - cmp.zero_return) / scale
                rows.append(
                    {**row, "run": r.name, "arm": a, "obs": r.obs, "seed": r.seed, "normalised_return": f"{norm:.6g}"}
                )
    write_csv_atomic(path, CSV_COLUMNS, rows)
    return path


def write_report(cmp: Comparison, out: str | Path, setup: dict[str, Any]) -> dict[str, Path]:
    """Write evaluations.csv, plots, summary.json, report.md and report.html into ``out``.

    Returns the written files by role (``csv``, ``summary``, ``markdown``, ``html``, ``plot_<name>``).
    Plots of aggregates and of probability of improvement are written only when some arm (pair)
    has at least MIN_RUNS runs.
    """
    out = Path(out)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    made = {
        "curves": plot_curves(cmp, plots_dir / "curves.png"),
        "steps": plot_steps_to_threshold(cmp, plots_dir / "steps_to_threshold.png"),
        "profiles": plot_profiles(cmp, plots_dir / "performance_profiles.png"),
        "aggregates": plot_aggregates(cmp, plots_dir / "aggregates.png"),
        "improvement": plot_improvement(cmp, plots_dir / "improvement.png"),
    }
    plots = {k: v for k, v in made.items() if v is not None}
    for k, v in made.items():  # a stale plot from an earlier report must not be mistaken for this one's
        if v is None:
            (plots_dir / f"{k}.png").unlink(missing_ok=True)
    files = {"csv": write_evaluations_csv(cmp, out / "evaluations.csv")}
    write_json_atomic(out / "summary.json", summary_dict(cmp, setup))
    files["summary"] = out / "summary.json"
    blocks = build_blocks(cmp, setup, plots, out)
    write_text_atomic(out / "report.md", render_markdown(blocks, out))
    title = f"Which observations learn faster: {setup.get('env_id', '')}"
    write_text_atomic(out / "report.html", render_html(blocks, title))
    files.update(
        {"markdown": out / "report.md", "html": out / "report.html", **{f"plot_{k}": v for k, v in plots.items()}}
    )
    return files
