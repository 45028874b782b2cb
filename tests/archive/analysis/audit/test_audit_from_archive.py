"""The audit from the archive alone: rule-tagged clips plus an outcome CSV, no annotation at all.

The seed study's Table 4 (TT 15/32 effective, OT 24/32; Pearson χ² 5.32
without continuity correction, P 0.021) is reproduced from 64 archived
procedures and checked against scipy; the safety section of an archive where
nothing was marked says "not assessable"; identifiers are in every case table.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scipy.stats import chi2_contingency

from archive.analysis.audit.results import NOT_ASSESSABLE
from archive.archive import Archive
from archive.cli.main import main
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from tests.archive.ingest_helpers import part10_bytes, us_dataset

N_PER_GROUP = 32
EFFECTIVE = {"TT": 15, "OT": 24}
HEADER = "study_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event\n"


def _build(data_dir: Path, db_url: str) -> dict[str, tuple[str, str]]:
    """64 studies, one rule-tagged clip each; study UID → (technique, accession)."""
    studies: dict[str, tuple[str, str]] = {}
    with Archive.open(ArchiveSettings(data_dir, db_url)) as archive:
        for technique in ("TT", "OT"):
            for k in range(N_PER_GROUP):
                seed = len(studies)
                ds = us_dataset(
                    description=f"L4/5 MBB right {technique}",
                    patient_id=f"P{seed:03d}",
                    study_date=date(2020, 1, 1 + seed % 28),
                    seed=seed,
                    AccessionNumber=f"A{seed:04d}",
                    PerformingPhysicianName=f"Wu^Junzhen{k % 2}",
                    StationName="EDGE-1",
                )
                archive.ingest(part10_bytes(ds), origin=Origin("file"))
                studies[str(ds.StudyInstanceUID)] = (technique, f"A{seed:04d}")
    return studies


def _outcome_csv(studies: dict[str, tuple[str, str]]) -> str:
    lines = [HEADER]
    made = {"TT": 0, "OT": 0}
    for uid, (technique, _) in studies.items():
        effective = made[technique] < EFFECTIVE[technique]
        made[technique] += 1
        vas_2w, odi_2w = (3, 20) if effective else (5, 35)  # from 7 and 43: ≥ 50 % and ≥ 40 % or not
        lines.append(f"{uid},right,7,4,{vas_2w},43,22,{odi_2w},\n")
    return "".join(lines)


def _cli(data_dir: Path, db_url: str, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--db", db_url, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def table4(tmp_path: Path, db_url: str) -> tuple[dict[str, Any], Path, Path, dict[str, tuple[str, str]]]:
    data_dir = tmp_path / "data"
    studies = _build(data_dir, db_url)
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text(_outcome_csv(studies), encoding="utf-8")
    _cli(data_dir, db_url, "outcome", "import", str(outcomes))
    html, csv_path = tmp_path / "audit.html", tmp_path / "audit.csv"
    report = json.loads(
        _cli(data_dir, db_url, "--json", "audit", "--html", str(html), "--csv", str(csv_path))
    )
    return report, html, csv_path, studies


def test_table_4_is_reproduced_from_tagged_clips_and_an_outcome_csv(
    table4: tuple[dict[str, Any], Path, Path, dict[str, tuple[str, str]]],
) -> None:
    report, _, _, _ = table4
    assert report["counts"]["clips"] == 0, "no clip is reviewed"
    assert report["counts"]["procedures"] == 64
    assert report["counts"]["procedures_with_reviewed_clip"] == 0
    groups = {(g["technique"], g["level"]): g for g in report["groups"]}
    assert groups[("TT", "all")]["effective"]["count"] == 15
    assert groups[("OT", "all")]["effective"]["count"] == 24
    assert groups[("TT", "all")]["n_procedures"] == groups[("OT", "all")]["n_procedures"] == 32
    effective = next(c for c in report["comparisons"] if c["variable"] == "effective" and c["scope"] == "all")
    assert effective["planned"] is True
    (result,) = effective["results"]
    chi2, p, dof, _ = chi2_contingency([[24, 8], [15, 17]], correction=False)
    assert result["test"].startswith("Pearson")
    assert result["statistic"] == pytest.approx(chi2, rel=1e-12)
    assert result["p_value"] == pytest.approx(p, rel=1e-12)
    assert result["df"] == dof == 1
    assert round(result["statistic"], 2) == 5.32 and round(result["p_value"], 3) == 0.021
    # No events are marked: every procedure is timed by its clip span (one 2-frame clip, 33.3 ms),
    # so the times are all equal and the t-test says why it cannot be computed.
    assert {p["time_source"] for p in report["procedures"]} == {"clip span, no events marked"}
    assert all(p["time_s"] == pytest.approx(0.0333) for p in report["procedures"])
    time = next(
        c for c in report["comparisons"] if c["variable"] == "procedure_time_s" and c["scope"] == "all"
    )
    assert time["results"] == [] and "both are constant" in time["error"]
    # No "in-plane" group and no comparison against one.
    assert {g["technique"] for g in report["groups"]} == {"OT", "TT"}
    assert all(set(c["groups"]) == {"OT", "TT"} for c in report["comparisons"])


def test_safety_of_an_archive_where_nothing_was_marked_is_not_assessable(
    table4: tuple[dict[str, Any], Path, Path, dict[str, tuple[str, str]]],
) -> None:
    report, html, _, _ = table4
    groups = report["safety"]["groups"]
    assert {(g["technique"], g["level"]) for g in groups} >= {("TT", "all"), ("OT", "L5")}
    for group in groups:
        assert group["clips"] == 32 and group["clips_reviewed"] == 0
        assert group["reviews_with_danger_marked"] == 0
        assert group["breaches"] is None and group["min_tip_to_danger_mm"] is None
        assert group["not_assessable"] == NOT_ASSESSABLE
    text = html.read_text("utf-8")
    section = text[text.index('id="safety"') :]
    section = section[: section.index("</section>")]
    assert "not assessable" in section
    assert "0 breaches" not in section and "0 clips within" not in section


def test_identifiers_are_in_every_case_table_of_json_csv_and_html(
    table4: tuple[dict[str, Any], Path, Path, dict[str, tuple[str, str]]],
) -> None:
    report, html, csv_path, studies = table4
    for procedure in report["procedures"]:
        technique, accession = studies[procedure["study_uid"]]
        assert procedure["technique"] == technique
        assert procedure["accession_number"] == accession
        assert procedure["patient_id"].startswith("P")
        assert procedure["study_date"].startswith("2020-01-")
        assert procedure["operator"] in ("Wu Junzhen0", "Wu Junzhen1")
        assert procedure["station"] == "EDGE-1"
    for outcome in report["outcomes"]:
        assert outcome["accession_number"] == studies[outcome["study_uid"]][1]
    operators = {(o["operator"], o["technique"]): o["procedures"] for o in report["operators"]}
    assert operators == {
        ("Wu Junzhen0", "OT"): 16,
        ("Wu Junzhen1", "OT"): 16,
        ("Wu Junzhen0", "TT"): 16,
        ("Wu Junzhen1", "TT"): 16,
    }
    text = html.read_text("utf-8")
    for accession in ("A0000", "A0063"):
        assert accession in text
    assert "Wu Junzhen1" in text and "EDGE-1" in text
    rows = list(csv.DictReader(io.StringIO(csv_path.with_name("audit-procedures.csv").read_text("utf-8"))))
    assert len(rows) == 64
    assert {"patient_id", "study_date", "accession_number", "operator", "station"} <= set(rows[0])
    assert {row["accession_number"] for row in rows} == {a for _, a in studies.values()}


def test_outcome_template_fill_import_round_trip(tmp_path: Path, db_url: str) -> None:
    data_dir = tmp_path / "data"
    studies = _build(data_dir, db_url)
    template = tmp_path / "template.csv"
    assert "64 procedure(s) without an outcome" in _cli(
        data_dir, db_url, "outcome", "template", str(template)
    )
    rows = list(csv.DictReader(io.StringIO(template.read_text("utf-8"))))
    assert len(rows) == 64
    assert list(rows[0])[:7] == [
        "patient_id",
        "study_date",
        "accession_number",
        "operator",
        "station",
        "study_uid",
        "side",
    ]
    assert {(r["study_uid"], r["accession_number"]) for r in rows} == {
        (u, a) for u, (_, a) in studies.items()
    }
    assert all(r["station"] == "EDGE-1" and r["operator"].startswith("Wu Junzhen") for r in rows)
    # Clinic staff fill in the scores of the first ten by accession number alone (no study UID).
    filled = tmp_path / "filled.csv"
    writer_rows = []
    for r in rows[:10]:
        writer_rows.append(
            {**r, "study_uid": "", "vas_pre": "7", "vas_2w": "3", "odi_pre": "43", "odi_2w": "20"}
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(writer_rows)
    filled.write_text(buffer.getvalue(), encoding="utf-8")
    assert "10 outcome(s) added or changed" in _cli(data_dir, db_url, "outcome", "import", str(filled))
    # The next template lists only the 54 procedures still lacking an outcome.
    _cli(data_dir, db_url, "outcome", "template", str(template))
    left = list(csv.DictReader(io.StringIO(template.read_text("utf-8"))))
    assert len(left) == 54
    assert not {r["accession_number"] for r in left} & {r["accession_number"] for r in rows[:10]}
    report = json.loads(_cli(data_dir, db_url, "--json", "audit"))
    assert report["counts"]["outcomes"] == 10
