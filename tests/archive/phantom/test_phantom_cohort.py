"""Cohort mode: expected clips per side and technique, timing, outcomes CSV, manifest."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

from archive.errors import PhantomError
from archive.model import Technique
from archive.phantom import GroundTruth
from archive.phantom.cohort import ADVERSE_EVENT, EFFECTIVE_RATE, OUTCOME_COLUMNS, generate_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, 6, seed=5, rows=160, cols=200, frames=8)
    return out


def test_clips_per_side_follow_the_technique(cohort: Path) -> None:
    manifest = json.loads((cohort / "manifest.json").read_text("utf-8"))
    by_procedure: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for clip in manifest["clips"]:
        by_procedure[(clip["study_uid"], clip["side"])].append(clip)
    assert len(by_procedure) == len(manifest["procedures"])
    techniques = {p["technique"] for p in manifest["procedures"]}
    assert techniques == {"TT", "OT"}
    for clips in by_procedure.values():
        levels = [c["level"] for c in clips]
        assert levels[-2:] == ["L4", "L5"] and set(levels) <= {"L3", "L4", "L5"}
        l5 = clips[-1]
        series = {c["series_number"] for c in clips}
        if l5["technique"] == "TT":
            assert l5["needle_view"] == "out-of-plane"
            assert len(series) == len(clips)  # a series per puncture
        else:
            assert l5["needle_view"] == "in-plane"
            assert len(series) == 1  # one puncture
        for clip in clips:
            ds = pydicom.dcmread(cohort / clip["dcm"], stop_before_pixels=True)
            assert ds.StudyInstanceUID == clip["study_uid"]
            assert ds.SeriesNumber == clip["series_number"]
            assert ds.ImageLaterality == {"right": "R", "left": "L"}[clip["side"]]


def _moment(ds: pydicom.Dataset, frame: int) -> dt.datetime:
    start = dt.datetime.strptime(f"{ds.ContentDate}{ds.ContentTime}", "%Y%m%d%H%M%S.%f")
    return start + dt.timedelta(milliseconds=float(ds.FrameTime) * frame)


def test_procedure_time_from_content_times_matches_manifest(cohort: Path) -> None:
    manifest = json.loads((cohort / "manifest.json").read_text("utf-8"))
    for procedure in manifest["procedures"]:
        clips = [
            c
            for c in manifest["clips"]
            if (c["study_uid"], c["side"]) == (procedure["study_uid"], procedure["side"])
        ]
        first, last = clips[0], clips[-1]
        first_truth = GroundTruth.read(cohort / first["truth"])
        last_truth = GroundTruth.read(cohort / last["truth"])
        begin = _moment(pydicom.dcmread(cohort / first["dcm"]), first_truth.events["needle visible"] or 0)
        end = _moment(pydicom.dcmread(cohort / last["dcm"]), last_truth.events["injection end"] or 0)
        assert (end - begin).total_seconds() == pytest.approx(procedure["procedure_time_s"], abs=0.01)
        low, high = (200, 420) if procedure["technique"] == "OT" else (300, 680)
        assert low < procedure["procedure_time_s"] < high


def test_outcomes_csv(cohort: Path) -> None:
    manifest = json.loads((cohort / "manifest.json").read_text("utf-8"))
    with (cohort / "outcomes.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == OUTCOME_COLUMNS
    assert [(r["study_uid"], r["side"]) for r in rows] == [
        (p["study_uid"], p["side"]) for p in manifest["procedures"]
    ]
    technique = {(p["study_uid"], p["side"]): p["technique"] for p in manifest["procedures"]}
    effective: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        vas = [int(row[k]) for k in ("vas_pre", "vas_1h", "vas_2w")]
        odi = [int(row[k]) for k in ("odi_pre", "odi_1h", "odi_2w")]
        assert all(0 <= v <= 10 for v in vas) and all(0 <= o <= 100 for o in odi)
        assert vas[1] < vas[0] and odi[1] < odi[0]
        ok = vas[0] - vas[2] >= 0.5 * vas[0] and odi[0] - odi[2] >= 0.4 * odi[0]
        effective[technique[(row["study_uid"], row["side"])]].append(ok)
        assert row["adverse_event"] in ("", ADVERSE_EVENT)
        if row["adverse_event"]:
            assert technique[(row["study_uid"], row["side"])] == "TT"
    for name, flags in effective.items():
        assert sum(flags) == round(EFFECTIVE_RATE[Technique(name)] * len(flags))


def test_same_seed_same_cohort(cohort: Path, tmp_path: Path) -> None:
    generate_cohort(tmp_path, 6, seed=5, rows=160, cols=200, frames=8)
    assert (tmp_path / "outcomes.csv").read_bytes() == (cohort / "outcomes.csv").read_bytes()
    assert (tmp_path / "manifest.json").read_bytes() == (cohort / "manifest.json").read_bytes()


def test_cohort_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PhantomError, match=r"n_patients: expected 1 to 500, but got 0"):
        generate_cohort(tmp_path, 0, seed=1)
    with pytest.raises(PhantomError, match=r"seed: expected 0 to 2\*\*31-1, but got -3"):
        generate_cohort(tmp_path, 2, seed=-3)


def test_outcomes_reproduce_the_study_headline(tmp_path: Path) -> None:
    import numpy as np

    from archive.model import Side
    from archive.phantom.cohort import Procedure, write_outcomes

    procedures = [
        Procedure(f"2.25.{i}", Side.RIGHT, Technique.OT if i % 2 else Technique.TT, 300.0) for i in range(64)
    ]
    write_outcomes(tmp_path / "outcomes.csv", procedures, np.random.default_rng(1))
    with (tmp_path / "outcomes.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    counts = {"TT": 0, "OT": 0}
    adverse = {"TT": 0, "OT": 0}
    for row, procedure in zip(rows, procedures, strict=True):
        vas_pre, vas_2w = int(row["vas_pre"]), int(row["vas_2w"])
        odi_pre, odi_2w = int(row["odi_pre"]), int(row["odi_2w"])
        counts[procedure.technique.value] += (
            vas_pre - vas_2w >= 0.5 * vas_pre and odi_pre - odi_2w >= 0.4 * odi_pre
        )
        adverse[procedure.technique.value] += row["adverse_event"] == ADVERSE_EVENT
    assert counts == {"OT": 24, "TT": 15}  # 75 % vs 47 % of 32
    assert adverse == {"TT": 2, "OT": 0}
