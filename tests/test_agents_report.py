"""agents.report: the honesty rules in report.md / report.html / summary.json (n < 5 warning,
"no significant difference" when CIs overlap, "beats" only when disjoint), the answer paragraph,
and the written files (CSV, PNG, self-contained HTML), on synthetic runs."""

from __future__ import annotations

import csv
import html
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from agents.report import NO_CLAIM, NO_DIFFERENCE, write_report
from agents.stats import RunRecord, compare_runs

T = np.arange(0, 2001, 200)
SETUP = {"env_id": "wm/JacoReach-v1", "camera": "moving"}


@dataclass(frozen=True)
class Ref:
    """Stand-in with the attributes of agents.reference.ReferenceScores."""

    expert_return: float = 50.0
    zero_return: float = 10.0
    source: str = "scripted DLS expert"
    seeds: tuple[int, ...] = tuple(range(1_000_000, 1_000_030))


def _runs(spec: dict[str, tuple[int, float, float]], seed: int = 0) -> list[RunRecord]:
    """Per arm ``(runs, final mean, spread)``: each run ramps linearly to its own final normalised score."""
    rng = np.random.default_rng(seed)
    ref, out = Ref(), []
    for arm, (n, mean, spread) in spec.items():
        for s in range(n):
            final = mean + spread * rng.uniform(-1, 1)
            score = final * T / T[-1]
            returns = ref.zero_return + score * (ref.expert_return - ref.zero_return)
            out.append(RunRecord(f"{arm}_s{s}", arm, s, T, returns, None, {"wall_s": 1.0}, arm=arm, eval_episodes=30))
    return out


def _report(tmp_path, spec, reps=300):
    cmp = compare_runs(_runs(spec), Ref(), reps=reps)
    files = write_report(cmp, tmp_path, SETUP)
    return cmp, files, files["markdown"].read_text(), json.loads(files["summary"].read_text())


def test_answer_states_normalisation_budget_seeds_and_who_beats_whom(tmp_path):
    _, _, md, summary = _report(tmp_path, {"repr": (6, 1.0, 0.05), "pixels": (6, 0.4, 0.05)})
    answer = summary["answer"]
    assert md.startswith("# ") and f"**{answer}**" in md  # the answer leads the report
    for part in (
        "1 = the scripted expert's mean return (50)",
        "0 = the zero-action policy's (10)",
        "30 evaluation episodes",
        "Budget: 2k env steps per run",
        "seeds 0-5 (6 runs per arm)",
    ):
        assert part in answer
    # separated arms: disjoint CIs and P(repr > pixels) CI above 0.5, so a claim is allowed
    agg = summary["aggregates_normalised"]
    assert agg["repr"]["IQM"][1] > agg["pixels"]["IQM"][2]
    assert summary["probability_of_improvement"]["repr,pixels"][1] > 0.5
    assert "repr beats pixels on final normalised score" in answer
    assert "repr reached 0.8 in fewer env steps than pixels" in answer
    assert NO_CLAIM not in md and agg["repr"]["underpowered"] is False
    # pixels never stays >= 0.8: its steps and the ratio are bounds, never made-up numbers
    assert summary["steps_to_threshold"]["pixels"] == [None, None, None]
    assert "> 2k [> 2k, > 2k]" in md
    ratio = summary["steps_ratio_pixels_over"]["repr"]
    assert ratio["point"][1] is None and re.search(r"pixels / repr: > [0-9.]+x \[95% CI [0-9.]+x, unbounded\]", answer)


def test_overlapping_intervals_say_no_significant_difference(tmp_path):
    _, _, md, summary = _report(tmp_path, {"repr": (6, 0.9, 0.3), "pixels": (6, 0.85, 0.3)})
    agg = summary["aggregates_normalised"]
    assert agg["repr"]["IQM"][1] <= agg["pixels"]["IQM"][2] and agg["pixels"]["IQM"][1] <= agg["repr"]["IQM"][2]
    assert f"repr vs pixels: {NO_DIFFERENCE} in final normalised score (CIs overlap" in summary["answer"]
    assert "beats" not in summary["answer"] and not re.search(r"(repr|pixels) beats", md)
    assert summary["verdicts"]["repr,pixels"]["final"] == "none"


def test_fewer_than_five_runs_shows_runs_not_aggregates(tmp_path):
    cmp, files, md, summary = _report(tmp_path, {"repr": (3, 1.0, 0.05), "pixels": (3, 0.4, 0.05)})
    assert NO_CLAIM in summary["answer"] and not re.search(r"(repr|pixels) beats", md) and "fewer env steps" not in md
    iqm_text = f"{cmp.aggregates['repr']['IQM'][0]:.3g} [{cmp.aggregates['repr']['IQM'][1]:.3g}"
    assert iqm_text not in md  # the IQM [CI] is not printed as if it meant something
    final_table = md.split("## Final performance")[1].split("##")[0]
    final = next(line for line in final_table.splitlines() if line.startswith("| repr | 3 |"))
    assert NO_CLAIM in final
    for v in cmp.normalised_final["repr"]:  # per-run values instead
        assert f"{v:.3g}" in final
    # the numbers stay in summary.json, flagged
    assert summary["underpowered"] == {"repr": True, "pixels": True}
    assert summary["aggregates_normalised"]["repr"]["underpowered"] is True
    assert summary["steps_ratio_pixels_over"]["repr"]["underpowered"] is True
    assert summary["verdicts"]["repr,pixels"]["final"] == "underpowered"
    # no aggregate plots for underpowered arms; the rest is written
    assert (
        not (tmp_path / "plots" / "aggregates.png").exists() and not (tmp_path / "plots" / "improvement.png").exists()
    )
    assert {"plot_curves", "plot_steps", "plot_profiles"} <= set(files)


def test_written_files_csv_png_and_self_contained_html(tmp_path):
    _, files, md, summary = _report(tmp_path, {"repr": (5, 0.9, 0.1), "pixels": (5, 0.5, 0.1), "state": (2, 1.0, 0.0)})
    plots = sorted(k for k in files if k.startswith("plot_"))
    assert plots == ["plot_aggregates", "plot_curves", "plot_improvement", "plot_profiles", "plot_steps"]
    for k in plots:
        with Image.open(files[k]) as im:
            assert im.format == "PNG" and im.size[0] > 200
        assert f"plots/{files[k].name}" in md
    page = files["html"].read_text()
    assert page.count("data:image/png;base64,") == len(plots) and 'src="http' not in page
    assert html.escape(NO_CLAIM) in page  # the 2-run state arm is flagged, the others are not
    # The Markdown library rendered the tables, the answer box and the headings (not literal Markdown).
    assert page.count("<table>") == md.count("\n|---|") and '<p class="answer"><strong>' in page
    assert "<h1>" in page and "<h2>" in page and "| --- |" not in page and "{: .answer}" not in page + md
    assert summary["underpowered"] == {"repr": False, "pixels": False, "state": True}
    # P(pixels > state) involves the underpowered state arm: no claim, even though the IQM CIs are disjoint
    assert summary["verdicts"]["pixels,state"]["final"] == "underpowered"

    with open(files["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 * T.size
    r = next(r for r in rows if r["run"] == "pixels_s1" and r["timesteps"] == str(T[-1]))
    assert r["arm"] == "pixels" and float(r["normalised_return"]) == pytest.approx(
        (float(r["mean_return"]) - 10) / 40, rel=1e-5
    )
    assert summary["runs"]["pixels"][1]["normalised_final"] == pytest.approx(float(r["normalised_return"]), rel=1e-5)
    assert summary["normalisation"] == {
        "formula": "(return - zero_return) / (expert_return - zero_return)",
        "expert_return": 50.0,
        "zero_return": 10.0,
        "evaluation_episodes": 30,
        "source": "scripted DLS expert",
    }
    tau = summary["performance_profile"]["tau"]
    assert len(tau) == len(summary["performance_profile"]["repr"]["point"]) and tau == sorted(tau)
    assert math.isfinite(summary["budget_steps"]) and summary["bootstrap_seed"] == 0


def test_stale_aggregate_plot_is_removed(tmp_path):
    _report(tmp_path, {"repr": (5, 0.9, 0.1), "pixels": (5, 0.5, 0.1)}, reps=50)
    assert (tmp_path / "plots" / "aggregates.png").is_file()
    _report(tmp_path, {"repr": (2, 0.9, 0.1), "pixels": (2, 0.5, 0.1)}, reps=50)
    assert not (tmp_path / "plots" / "aggregates.png").exists()
    assert "aggregates.png" not in (tmp_path / "report.md").read_text()
