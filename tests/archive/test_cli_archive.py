from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ingest_helpers import us_dataset, write_instance

from archive.cli.main import main


def run(data_dir: Path, db_url: str, *args: str) -> Result:
    """``usarchive --data-dir D --db URL ARGS``, after ``usarchive init`` when D holds no archive yet."""
    root = ["--data-dir", str(data_dir), "--db", db_url]
    if not (data_dir / "store").is_dir():
        assert CliRunner().invoke(main, [*root, "init"], catch_exceptions=False).exit_code == 0
    return CliRunner().invoke(main, [*root, *args], catch_exceptions=False)


def run_json(data_dir: Path, db_url: str, *args: str) -> object:
    result = run(data_dir, db_url, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, object]:
    """Three clips of two patients in a nested directory, a broken file and a note (skipped)."""
    source = tmp_path / "incoming"
    a = us_dataset(patient_id="P1", description="L5 MBB left TT", study_date=date(2024, 1, 10))
    b = us_dataset(
        patient_id="P1",
        description="L3 radiofrequency right in-plane",
        study_date=date(2024, 1, 10),
        study_uid=a.StudyInstanceUID,
    )
    # an "other" capture of an ultrasound study: the rules apply to it through its study's US
    c = us_dataset(
        patient_id="P2",
        description="C5 epidural OT",
        study_date=date(2023, 6, 1),
        Modality="OT",
        ModalitiesInStudy=["US", "OT"],
    )
    paths = [
        write_instance(source, a),
        write_instance(source / "deeper", b),
        write_instance(source / "deeper" / "more", c),
    ]
    (source / "notes.txt").write_text("not dicom")
    (source / "deeper" / "broken").write_bytes(b"half a DICOM file")
    return {"dir": source, "paths": paths, "datasets": [a, b, c]}


def test_import_reports_and_fails_on_rejections(
    tmp_path: Path, db_url: str, inputs: dict[str, object]
) -> None:
    data = tmp_path / "data"
    result = run(data, db_url, "import", str(inputs["dir"]))
    assert result.exit_code == 1
    assert "5 files: 3 stored, 0 duplicate, 0 replaced, 1 rejected, 1 skipped (not DICOM)" in result.output
    assert "broken: [not-dicom]" in result.output
    assert "notes.txt" not in result.output
    again = run(data, db_url, "--json", "import", *[str(p) for p in inputs["paths"]])  # type: ignore[attr-defined]
    assert again.exit_code == 0
    summary = json.loads(again.output)
    assert (summary["stored"], summary["duplicate"], summary["rejected"]) == (0, 3, 0)
    assert {item["outcome"] for item in summary["results"]} == {"duplicate"}


def test_import_of_a_directory_skips_sidecars_but_not_dicom_in_disguise(tmp_path: Path, db_url: str) -> None:
    source = tmp_path / "incoming"
    ds = us_dataset(patient_id="P1", description="L5 MBB left TT")
    disguised = us_dataset(patient_id="P1", description="L4 MBB left TT", study_uid=ds.StudyInstanceUID)
    write_instance(source, ds)
    write_instance(source / "export", disguised, name="clip.JSON")  # DICM at 128: offered, stored
    (source / "README.md").write_text("# clips\n")
    (source / "export" / "clip.truth.json").write_text('{"level": "L4"}')
    (source / "export" / "empty.txt").write_bytes(b"")
    (source / "scan.bin").write_bytes(b"\0" * 200)  # unknown ending: offered, rejected
    summary = run(tmp_path / "data", db_url, "--json", "import", str(source))
    assert summary.exit_code == 1
    report = json.loads(summary.output)
    assert (report["files"], report["stored"], report["rejected"], report["skipped"]) == (6, 2, 1, 3)
    assert sorted(Path(p).name for p in report["skipped_files"]) == [
        "README.md",
        "clip.truth.json",
        "empty.txt",
    ]
    outcomes = {Path(r["source"]).name: (r["outcome"], r["code"]) for r in report["results"]}
    assert outcomes["clip.JSON"] == ("stored", None)
    assert outcomes["scan.bin"] == ("rejected", "not-dicom")


def test_import_of_only_dicom_and_sidecars_exits_zero(tmp_path: Path, db_url: str) -> None:
    source = tmp_path / "incoming"
    write_instance(source, us_dataset(patient_id="P1", description="L5 MBB left TT"))
    (source / "notes.txt").write_text("not dicom")
    result = run(tmp_path / "data", db_url, "import", str(source))
    assert result.exit_code == 0, result.output
    assert "2 files: 1 stored, 0 duplicate, 0 replaced, 0 rejected, 1 skipped (not DICOM)" in result.output


def test_a_sidecar_named_on_the_command_line_is_offered_and_rejected(tmp_path: Path, db_url: str) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not dicom")
    result = run(tmp_path / "data", db_url, "--json", "import", str(notes))
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert (report["files"], report["rejected"], report["skipped"], report["skipped_files"]) == (1, 1, 0, [])
    assert report["results"][0]["code"] == "not-dicom"


def test_import_of_the_sample_directory_stores_the_clips_and_skips_the_sidecars(
    tmp_path: Path, db_url: str, sample_dir: Path
) -> None:
    clips = sorted(sample_dir.glob("*.dcm"))
    sidecars = sorted(p for p in sample_dir.iterdir() if p.suffix in (".json", ".md"))
    assert len(clips) == 7 and len(sidecars) == 8  # README.md and one truth file per clip
    result = run(tmp_path / "data", db_url, "--json", "import", str(sample_dir))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["stored"], report["rejected"], report["skipped"]) == (7, 0, 8)
    assert sorted(report["skipped_files"]) == [str(p) for p in sidecars]
    assert sorted(r["source"] for r in report["results"]) == [str(p) for p in clips]


def test_find_by_each_filter(tmp_path: Path, db_url: str, inputs: dict[str, object]) -> None:
    data = tmp_path / "data"
    run(data, db_url, "import", str(inputs["dir"]))
    a, b, c = (ds.SOPInstanceUID for ds in inputs["datasets"])  # type: ignore[attr-defined]

    def uids(*args: str) -> set[str]:
        rows = run_json(data, db_url, "find", *args)
        assert isinstance(rows, list)
        return {row["sop_instance_uid"] for row in rows}

    assert uids() == {a, b, c}
    assert uids("--patient", "P1") == {a, b}
    assert uids("--patient", "Doe^Jane") == {a, b, c}
    assert uids("--level", "L5") == {a}
    assert uids("--level", "L3,C5") == {b, c}
    assert uids("--side", "R") == {b}
    assert uids("--side", "left") == {a}
    assert uids("--technique", "TT") == {a}
    assert uids("--technique", "ot") == {c}
    assert uids("--procedure", "epidural") == {c}
    assert uids("--procedure", "radiofrequency") == {b}
    assert uids("--date-from", "2024-01-01") == {a, b}
    assert uids("--date-to", "20240109") == {c}
    assert uids("--date-from", "2023-06-01", "--date-to", "2023-06-01") == {c}
    assert uids("--date-from", "2024-01-11") == set()
    assert uids("--modality", "OT") == {c}
    assert uids("--level", "L5", "--technique", "OT") == set()
    assert len(uids("--limit", "1")) == 1
    rows = run_json(data, db_url, "find", "--level", "L5")
    assert isinstance(rows, list)
    row = rows[0]
    assert row["study_date"] == "2024-01-10" and row["levels"] == ["L5"] and row["frames"] == 2
    assert row["received_at"].endswith("+00:00")
    table = run(data, db_url, "find", "--patient", "P2")
    assert c in table.output and "1 instance(s)" in table.output


def test_bad_filter_value_names_valid_values(tmp_path: Path, db_url: str) -> None:
    result = run(tmp_path / "data", db_url, "find", "--technique", "sideways")
    assert result.exit_code == 2
    assert "TT, OT" in result.output


def test_tag_wins_and_is_kept_in_history(tmp_path: Path, db_url: str, inputs: dict[str, object]) -> None:
    data = tmp_path / "data"
    run(data, db_url, "import", str(inputs["dir"]))
    a = inputs["datasets"][0]  # type: ignore[index]
    result = run_json(
        data, db_url, "tag", a.StudyInstanceUID, "--level", "L4", "--level", "L5", "--side", "R",
        "--technique", "OT", "--user", "dr.who",
    )  # fmt: skip
    assert isinstance(result, dict)
    changes = {(c["sop_instance_uid"], c["attribute"]): c for c in result["changes"]}
    assert changes[(a.SOPInstanceUID, "technique")]["old_value"] == "TT"
    assert changes[(a.SOPInstanceUID, "technique")]["new_value"] == "OT"
    assert changes[(a.SOPInstanceUID, "levels")]["new_value"] == "L4,L5"
    assert {c["changed_by"] for c in result["changes"]} == {"user:dr.who"}
    assert len({uid for uid, _ in changes}) == 2, "the whole study is tagged"
    found = run_json(data, db_url, "find", "--technique", "OT", "--patient", "P1")
    assert isinstance(found, list) and len(found) == 2
    shown = run_json(data, db_url, "show", a.SOPInstanceUID)
    assert isinstance(shown, dict)
    assert shown["kind"] == "instance"
    assert shown["procedure"]["technique_source"] == "user:dr.who"
    assert [lv["level"] for lv in shown["levels"]] == ["L4", "L5"]
    assert any(h["attribute"] == "side" and h["new_value"] == "right" for h in shown["tag_history"])
    # a re-import (replace policy) re-runs the rules but must not undo the tag
    path = inputs["paths"][0]  # type: ignore[index]
    a.PatientName = "Changed^Name"
    write_instance(path.parent, a, name=path.name)
    replaced = run(data, db_url, "import", "--duplicate-policy", "replace", str(path))
    assert replaced.exit_code == 0 and "1 replaced" in replaced.output
    shown = run_json(data, db_url, "show", a.SOPInstanceUID)
    assert isinstance(shown, dict)
    assert shown["procedure"]["technique"] == "OT" and shown["procedure"]["side"] == "right"
    assert len(shown["file_history"]) == 1


def test_tag_approach_note_and_clear_on_the_command_line(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "data"
    ds = us_dataset(description="L5 MBB right OT OOP")
    write_instance(tmp_path / "in", ds)
    run(data, db_url, "import", str(tmp_path / "in"))
    uid = ds.SOPInstanceUID
    found = run_json(data, db_url, "find", "--approach", "out-of-plane", "--technique", "OT")
    assert isinstance(found, list) and [r["approach"] for r in found] == ["out-of-plane"]
    run(
        data, db_url, "tag", uid, "--approach", "in-plane", "--user", "ann", "--note", "shaft seen on frame 3"
    )
    assert run_json(data, db_url, "find", "--approach", "out-of-plane") == []
    stats = run_json(data, db_url, "stats")
    assert isinstance(stats, dict) and stats["by_approach"] == {"in-plane": 1}
    cleared = run_json(data, db_url, "tag", uid, "--clear", "approach", "--user", "bob")
    assert isinstance(cleared, dict)
    assert [(c["attribute"], c["old_value"], c["new_value"]) for c in cleared["changes"]] == [
        ("approach", "in-plane", "out-of-plane")
    ]
    shown = run_json(data, db_url, "show", uid)
    assert isinstance(shown, dict)
    assert shown["procedure"]["approach"] == "out-of-plane"
    assert shown["procedure"]["approach_source"] == "rule"
    assert [(h["changed_by"], h["note"]) for h in shown["tag_history"]] == [
        ("user:ann", "shaft seen on frame 3"),
        ("user:bob", "cleared: back to the rule-derived value"),
    ]
    refused = run(data, db_url, "tag", uid, "--clear", "colour")
    assert refused.exit_code == 2 and "colour" in refused.output
    help_text = " ".join(run(data, db_url, "tag", "--help").output.split())
    assert "two points via one puncture" in help_text and "two points via two punctures" in help_text


def test_tag_unknown_uid_fails(tmp_path: Path, db_url: str) -> None:
    result = run(tmp_path / "data", db_url, "tag", "1.2.3", "--side", "L")
    assert result.exit_code == 1
    assert "usarchive find" in result.output


def test_show_study_and_series(tmp_path: Path, db_url: str, inputs: dict[str, object]) -> None:
    data = tmp_path / "data"
    run(data, db_url, "import", str(inputs["dir"]))
    a, b, _c = inputs["datasets"]  # type: ignore[misc]
    study = run_json(data, db_url, "show", a.StudyInstanceUID)
    assert isinstance(study, dict)
    assert study["kind"] == "study" and study["patient"]["patient_id"] == "P1"
    assert len(study["series"]) == 2
    series = run_json(data, db_url, "show", b.SeriesInstanceUID)
    assert isinstance(series, dict)
    assert series["kind"] == "series" and series["instances"] == [b.SOPInstanceUID]
    text = run(data, db_url, "show", a.SOPInstanceUID)
    assert text.exit_code == 0 and "instance " + a.SOPInstanceUID in text.output
    missing = run(data, db_url, "show", "9.9.9")
    assert missing.exit_code == 1


def test_verify_finds_and_repairs(tmp_path: Path, db_url: str, inputs: dict[str, object]) -> None:
    data = tmp_path / "data"
    run(data, db_url, "import", str(inputs["dir"]))
    clean = run_json(data, db_url, "verify")
    assert isinstance(clean, dict) and clean["ok"] and clean["checked"] == 3
    store = data / "store"
    stored = sorted(p for p in store.rglob("*.dcm") if ".tmp" not in p.parts)
    stored[0].write_bytes(stored[0].read_bytes()[:-1] + b"\x01")
    stored[1].unlink()
    orphan = write_instance(store / "00" / "1.2" / "1.3", us_dataset(patient_id="ORPHAN"), name="1.4.dcm")
    (store / ".tmp" / "leftover.part").write_bytes(b"partial")
    result = run(data, db_url, "--json", "verify")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert len(report["corrupt"]) == 1 and len(report["missing"]) == 1
    assert report["orphans"] == ["00/1.2/1.3/1.4.dcm"]
    repaired = run(data, db_url, "--json", "verify", "--repair", "--stale-after", "0")
    assert repaired.exit_code == 1, "corrupt and missing files cannot be repaired"
    actions = {item["path"]: item["action"] for item in json.loads(repaired.output)["repaired"]}
    moved = actions["00/1.2/1.3/1.4.dcm"]  # a stray is moved into the layout, not indexed where it lay
    assert moved.startswith("moved to ") and moved.endswith(" and indexed"), moved
    assert actions[".tmp/leftover.part"] == "removed stale temp file"
    assert not orphan.exists() or orphan.read_bytes()
    found = run_json(data, db_url, "find", "--patient", "ORPHAN")
    assert isinstance(found, list) and len(found) == 1
    after = json.loads(run(data, db_url, "--json", "verify").output)
    assert after["orphans"] == [] and after["stale_temp_files"] == []


def test_stats(tmp_path: Path, db_url: str, inputs: dict[str, object]) -> None:
    data = tmp_path / "data"
    run(data, db_url, "import", str(inputs["dir"]))
    numbers = run_json(data, db_url, "stats")
    assert isinstance(numbers, dict)
    assert (numbers["patients"], numbers["studies"], numbers["instances"]) == (2, 2, 3)
    assert numbers["by_technique"] == {"TT": 1, "unknown": 1, "OT": 1}
    assert numbers["by_modality"] == {"US": 2, "OT": 1}
    assert numbers["by_level"] == {"L5": 1, "L3": 1, "C5": 1}
    assert numbers["frames"] == 6
