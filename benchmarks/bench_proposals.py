"""Benchmark: needle and spread proposals (issue 20) — speed on one core and accuracy per corpus.

Measures :func:`archive.analysis.proposals.propose_clip` on 640×480 clips of
the phantom (in-plane and out-of-plane) and of the hard corpus
(:mod:`archive.phantom.hard`), with the straight-Hough baseline
(:func:`archive.analysis.proposals.baseline.propose_baseline`) on the same
clips. Speed is CPU time of this process per frame with every numerical
library held to one thread and the process pinned to one core (target:
≤ 20 ms per frame); wall time is reported beside it (the machine is shared).
Accuracy targets are those of issue 20 (see docs/proposals.md). The worst
frames are drawn, proposal over truth, into docs/images/proposals_worst.png.

Run::

    .venv/bin/python -m benchmarks.bench_proposals

Writes ``benchmarks/results/proposals.json`` and ``proposals.md``; exits
non-zero if a target is missed.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import skimage  # noqa: E402

from archive.analysis.proposals import METHOD, ClipProposal, propose_clip  # noqa: E402
from archive.analysis.proposals.baseline import BASELINE_METHOD, propose_baseline  # noqa: E402
from archive.phantom.proposal_corpus import Case, hard_cases, phantom_cases  # noqa: E402
from archive.phantom.scoring import ClipScore, FrameError, score_clip, summarise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURE = ROOT / "docs" / "images" / "proposals_worst.png"
ROWS, COLS = 480, 640
MS_PER_FRAME_TARGET = 20.0
TARGETS = {
    "tip_median_mm": ("<=", 1.0),
    "tip_p90_mm": ("<=", 2.5),
    "angle_median_deg": ("<=", 2.0),
    "found_fraction": (">=", 0.95),
    "claimed_fraction": ("<=", 0.05),
    "dice_median": (">=", 0.7),
}


def cpu_model() -> tuple[str, str]:
    """CPU model name and the vector-instruction flags that matter for numpy/scipy."""
    model, flags = platform.processor() or "unknown", ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            have = set(line.split(":", 1)[1].split())
            flags = " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw") if f in have)
    return model, flags


def run_case(case: Case) -> tuple[ClipProposal, float, float]:
    """Proposal for one clip with its CPU and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    proposal = propose_clip(
        case.frames,
        spacing_mm=case.spacing_mm,
        frame_interval_s=case.frame_interval_s,
        region=case.region,
        approach=case.approach,
    )
    return proposal, time.process_time() - cpu, time.perf_counter() - wall


def draw_worst(cases: dict[str, Case], proposals: dict[str, ClipProposal], worst: list[FrameError]) -> None:
    """The worst frames: a crop around the true tip, truth in green, proposal in red."""
    count = len(worst)
    if count == 0:
        return
    cols = min(3, count)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, error in zip(axes.ravel(), worst, strict=False):
        case = cases[error.clip]
        t = error.frame - 1
        tip = case.truth.tips[t]
        assert tip is not None
        half = round(12.0 / case.spacing_mm[0])  # 24 mm wide crop
        r0 = max(0, round(tip[0]) - half)
        c0 = max(0, round(tip[1]) - half)
        crop = case.frames[t][r0 : r0 + 2 * half, c0 : c0 + 2 * half]
        ax.imshow(crop, cmap="gray", vmin=0, vmax=255)
        entry = case.truth.entries[t]
        if entry is not None:
            ax.plot([entry[1] - c0, tip[1] - c0], [entry[0] - r0, tip[0] - r0], "-", color="lime", lw=1.2)
        ax.plot(tip[1] - c0, tip[0] - r0, "o", mfc="none", color="lime", ms=9)
        found = proposals[error.clip].frames[t]
        if found.shaft is not None:
            (er, ec), (tr, tc) = found.shaft
            ax.plot([ec - c0, tc - c0], [er - r0, tr - r0], "--", color="red", lw=1.0)
        if found.tip is not None:
            ax.plot(found.tip[1] - c0, found.tip[0] - r0, "x", color="red", ms=9)
        ax.set_xlim(0, crop.shape[1])
        ax.set_ylim(crop.shape[0], 0)
        angle = "" if error.angle_deg is None else f", angle {error.angle_deg:.1f}°"
        ax.set_title(f"{error.clip} frame {error.frame}\ntip {error.tip_mm:.2f} mm{angle}", fontsize=9)
    fig.suptitle("Worst frames (24 mm crops): truth green (o), proposal red (x, dashed)", fontsize=10)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=90)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _meets(key: str, value: float | None) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, bound = TARGETS[key]
    ok = value <= bound if op == "<=" else value >= bound
    return "yes" if ok else "**no**"


def main() -> int:
    """Run the benchmark; return 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames per clip")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = dt.datetime.now(dt.UTC)
    corpora = {
        "phantom": phantom_cases(rows=ROWS, cols=COLS, frames=args.frames),
        "phantom out-of-plane": phantom_cases(rows=ROWS, cols=COLS, frames=args.frames, out_of_plane=True),
        "hard": hard_cases(rows=ROWS, cols=COLS, frames=args.frames, spacing_mm=0.125),
    }
    rows: dict[str, dict[str, Any]] = {}
    timing = {"frames": 0, "cpu_s": 0.0, "wall_s": 0.0, "baseline_cpu_s": 0.0}
    all_scores: list[ClipScore] = []
    by_name: dict[str, Case] = {}
    proposals: dict[str, ClipProposal] = {}
    for corpus, cases in corpora.items():
        scores, baseline = [], []
        for case in cases:
            key = f"{corpus}:{case.name}"
            proposal, cpu, wall = run_case(case)
            timing["frames"] += len(case.frames)
            timing["cpu_s"] += cpu
            timing["wall_s"] += wall
            score = score_clip(key, proposal, case.truth)
            scores.append(score)
            by_name[key] = case
            proposals[key] = proposal
            if case.approach == "in-plane":
                cpu0 = time.process_time()
                reference = propose_baseline(case.frames, spacing_mm=case.spacing_mm, region=case.region)
                timing["baseline_cpu_s"] += time.process_time() - cpu0
                baseline.append(score_clip(key, reference, case.truth, spread=False))
        all_scores += scores
        rows[f"{corpus} — {METHOD}"] = summarise(scores).as_dict()
        if baseline:
            rows[f"{corpus} — {BASELINE_METHOD}"] = summarise(baseline).as_dict()
    worst = sorted((e for s in all_scores for e in s.errors), key=lambda e: e.tip_mm, reverse=True)[:6]
    draw_worst(by_name, proposals, worst)

    ms_cpu = 1000.0 * timing["cpu_s"] / timing["frames"]
    ms_wall = 1000.0 * timing["wall_s"] / timing["frames"]
    in_plane_frames = sum(len(c.frames) for cs in corpora.values() for c in cs if c.approach == "in-plane")
    ms_baseline = 1000.0 * timing["baseline_cpu_s"] / in_plane_frames
    model, flags = cpu_model()
    load = os.getloadavg()
    missed = [
        f"{name}: {key}"
        for name, row in rows.items()
        if METHOD in name
        for key in TARGETS
        if _meets(key, row.get(key)) == "**no**"
    ]
    if ms_cpu > MS_PER_FRAME_TARGET:
        missed.append(f"speed: {ms_cpu:.1f} ms per frame")
    result = {
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench_proposals",
        "machine": {"cpu": model, "flags": flags, "cpus": os.cpu_count(), "load": load},
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "skimage": str(getattr(skimage, "__version__", "unknown")),
        },
        "ms_per_frame_cpu": ms_cpu,
        "ms_per_frame_wall": ms_wall,
        "baseline_ms_per_frame_cpu": ms_baseline,
        "frames": timing["frames"],
        "summaries": rows,
        "worst": [e.__dict__ for e in worst],
        "missed": missed,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "proposals.json").write_text(
        json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8"
    )
    (RESULTS / "proposals.md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))
    return 1 if missed else 0


def _markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# Proposals: needle and spread detection (issue 20)",
        "",
        f"- command: `{result['command']}`",
        f"- date (UTC): {result['date']}",
        f"- machine: {machine['cpus']} CPUs, {machine['cpu']} (flags: {machine['flags']}), "
        f"Python {result['versions']['python']}, numpy {result['versions']['numpy']}, "
        f"scikit-image {result['versions']['skimage']}",
        f"- load average at the end (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in machine['load'])}",
        f"- clips: {ROWS}×{COLS} pixels, {result['frames']} frames in all; "
        "one thread, process pinned to one core",
        "",
        "| speed | ms per frame | target |",
        "|---|---:|---|",
        f"| {METHOD}, CPU time | {result['ms_per_frame_cpu']:.1f} | ≤ {MS_PER_FRAME_TARGET:g}: "
        f"{'yes' if result['ms_per_frame_cpu'] <= MS_PER_FRAME_TARGET else '**no**'} |",
        f"| {METHOD}, wall time (shared machine) | {result['ms_per_frame_wall']:.1f} | |",
        f"| {BASELINE_METHOD}, CPU time | {result['baseline_ms_per_frame_cpu']:.1f} | |",
        "",
        "Accuracy on frames where the needle is visible (tip, angle, found) and where there is none "
        "(claimed); spread Dice at injection end (median, minimum, and against the part of the truth "
        "outside the acoustic shadow). *yes/no*: issue 20's target.",
        "",
        "| corpus — method | tip median mm | tip p90 mm | angle median ° | found | claimed | "
        "Dice median | Dice min | Dice observable | visible / empty frames |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["summaries"].items():
        cells = []
        for key in ("tip_median_mm", "tip_p90_mm", "angle_median_deg", "found_fraction", "claimed_fraction"):
            mark = _meets(key, row.get(key)) if METHOD in name else ""
            cells.append(f"{_fmt(row.get(key))} {mark}".strip())
        mark = _meets("dice_median", row.get("dice_median")) if METHOD in name else ""
        cells.append(f"{_fmt(row.get('dice_median'))} {mark}".strip())
        cells.append(_fmt(row.get("dice_min")))
        cells.append(_fmt(row.get("dice_observable_median")))
        cells.append(f"{row['visible_frames']} / {row['absent_frames']}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Worst frames: `docs/images/proposals_worst.png`. Targets missed: "
        + ("; ".join(result["missed"]) if result["missed"] else "none")
        + ". Method and limits: docs/proposals.md.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
