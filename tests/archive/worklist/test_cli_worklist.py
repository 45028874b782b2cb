"""``usarchive worklist add / import / list / show / cancel / complete`` (--json), SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from archive.cli.main import main


def _run(data_dir: Path, db_url: str, *args: str) -> Result:
    root = ["--data-dir", str(data_dir), "--db", db_url]
    if not (data_dir / "store").is_dir():
        assert CliRunner().invoke(main, [*root, "init"], catch_exceptions=False).exit_code == 0
    return CliRunner().invoke(main, [*root, *args], catch_exceptions=False)


_ADD = [
    "worklist", "add", "--patient-id", "P1", "--patient-name", "DOE^JANE", "--birth-date", "1961-03-04",
    "--sex", "F", "--accession", "ACC1", "--date", "2026-12-02", "--time", "09:30",
    "--station-aet", "SCANNER1",
    "--modality", "US", "--procedure", "medial branch block", "--levels", "L4,L5", "--side", "right",
    "--technique", "OT", "--approach", "in-plane", "--physician", "SMITH^ANNA",
]  # fmt: skip


def test_add_list_show_cancel_complete(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "data"
    added = _run(data, db_url, "--json", *_ADD)
    assert added.exit_code == 0, added.output
    entry = json.loads(added.output)
    assert entry["description"] == "L4+L5 MBB right, OT (one puncture), in-plane"
    assert entry["levels"] == ["L4", "L5"] and entry["status"] == "scheduled"
    assert entry["study_instance_uid"].startswith("2.25.") and entry["scheduled_procedure_step_id"]
    assert [c["value"] for c in entry["protocol_codes"]] == [
        "MBB",
        "11994002",
        "49668003",
        "24028007",
        "OT",
        "IN-PLANE",
    ]
    second = _run(data, db_url, "--json", *[v if v != "ACC1" else "ACC2" for v in _ADD])
    listed = json.loads(_run(data, db_url, "--json", "worklist", "list").output)
    assert [e["accession_number"] for e in listed] == ["ACC1", "ACC2"]
    plain = _run(data, db_url, "worklist", "list").output.splitlines()
    assert plain[0].split("\t")[:2] == ["entry", "status"] and len(plain) == 3
    shown = _run(data, db_url, "worklist", "show", str(entry["entry"]))
    assert "L4+L5 MBB right, OT (one puncture), in-plane" in shown.output and "(11994002, SCT" in shown.output
    cancelled = _run(data, db_url, "worklist", "cancel", str(entry["entry"]), "--reason", "patient unwell")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    again = _run(data, db_url, "worklist", "complete", str(entry["entry"]))
    assert again.exit_code == 1 and "but it is cancelled" in again.output
    done = json.loads(
        _run(data, db_url, "--json", "worklist", "complete", str(json.loads(second.output)["entry"])).output
    )
    assert done["status"] == "completed"
    only = json.loads(_run(data, db_url, "--json", "worklist", "list", "--status", "cancelled").output)
    assert [e["note"] for e in only] == ["patient unwell"]


def test_bad_options_and_a_bad_csv_are_refused_with_reasons(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "data"
    bad = [v if v != "L4,L5" else "L9" for v in _ADD]
    refused = _run(data, db_url, *bad)
    assert refused.exit_code == 2 and "levels: expected levels such as L4,L5" in refused.output
    csv_file = tmp_path / "day.csv"
    csv_file.write_text(
        "patient_id,patient_name,accession,date,time,station_aet,procedure,levels,side,technique\n"
        "P1,DOE^JANE,A1,2026-12-02,09:30,SCANNER1,medial branch block,L4+L5,right,OT\n"
        "P2,DOE^JOHN,A2,2026-12-02,25:00,SCANNER1,medial branch block,L4,right,OT\n",
        encoding="utf-8",
    )
    result = _run(data, db_url, "worklist", "import", str(csv_file))
    assert result.exit_code == 1 and "line 3: time: expected a time" in result.output
    assert json.loads(_run(data, db_url, "--json", "worklist", "list").output) == []
    csv_file.write_text(csv_file.read_text(encoding="utf-8").replace("25:00", "10:00"), encoding="utf-8")
    imported = json.loads(_run(data, db_url, "--json", "worklist", "import", str(csv_file)).output)
    assert [e["accession_number"] for e in imported["scheduled"]] == ["A1", "A2"]


def test_sample_generate_for_a_worklist_entry_is_indexed_from_the_entry(tmp_path: Path, db_url: str) -> None:
    """``sample generate --worklist N`` (the demo scanner): the clip carries the entry, not its free text."""
    data = tmp_path / "data"
    entry = json.loads(_run(data, db_url, "--json", *_ADD).output)
    made = _run(
        data, db_url, "sample", "generate", str(tmp_path / "clips"), "--worklist", str(entry["entry"]),
        "--level", "L3", "--technique", "TT", "--frames", "8", "--rows", "160", "--cols", "200",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    clip = Path(json.loads(made.output)["dicom"])
    assert clip.name.startswith("L4_R_")  # the entry's first level and side are drawn
    assert _run(data, db_url, "import", str(clip)).exit_code == 0
    (row,) = json.loads(_run(data, db_url, "--json", "find", "--accession", "ACC1").output)
    assert row["study_instance_uid"] == entry["study_instance_uid"]
    assert (row["levels"], row["side"], row["technique"]) == (["L4", "L5"], "right", "OT")
    shown = json.loads(_run(data, db_url, "--json", "show", row["sop_instance_uid"]).output)
    assert shown["procedure"]["technique_source"] == f"worklist:{entry['entry']}"
    assert "L3" in shown["levels"][0]["detail"]  # what the free text said is kept beside it
    missing = _run(data, db_url, "sample", "generate", str(tmp_path / "x"), "--worklist", "99")
    assert missing.exit_code == 1 and "99" in missing.output
