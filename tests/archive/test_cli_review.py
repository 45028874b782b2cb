"""``usarchive review …`` and ``usarchive find --status/--reviewer`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from archive.cli.main import main
from archive.model import ClipEvent
from archive.phantom.to_annotation import annotation_from_truth
from archive.phantom.truth import GroundTruth
from archive.review import canonical_json, from_json, to_json
from archive.review.store import ENV_REVIEWER


def run(data_dir: Path, db_url: str, *args: str) -> Result:
    """``usarchive --data-dir D --db URL ARGS``, after ``usarchive init`` when D holds no archive yet."""
    root = ["--data-dir", str(data_dir), "--db", db_url]
    if not (data_dir / "store").is_dir():
        assert CliRunner().invoke(main, [*root, "init"], catch_exceptions=False).exit_code == 0
    return CliRunner().invoke(main, [*root, *args], catch_exceptions=False)


def run_json(data_dir: Path, db_url: str, *args: str) -> Any:
    result = run(data_dir, db_url, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def clip(sample_dir: Path) -> tuple[Path, GroundTruth]:
    source = sample_dir / "c45_danger_mono.dcm"
    return source, GroundTruth.read(source.with_suffix(".json"))


def test_review_workflow_through_the_cli(
    tmp_path: Path, db_url: str, clip: tuple[Path, GroundTruth], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_REVIEWER, raising=False)
    data = tmp_path / "data"
    source, truth = clip
    uid = truth.sop_instance_uid
    truth_file = source.with_suffix(".json")
    assert run(data, db_url, "import", str(source)).exit_code == 0

    saved = run_json(
        data, db_url, "review", "import-json", str(truth_file), "--reviewer", "alice", "--from-phantom-truth"
    )
    assert saved == [
        {
            "sop_instance_uid": uid,
            "reviewer": "alice",
            "version": 1,
            "created": True,
            "status": "draft",
            "content_sha256": saved[0]["content_sha256"],
        }
    ]

    exported = run(data, db_url, "review", "export-json", uid, "--reviewer", "alice")
    assert exported.exit_code == 0
    expected = annotation_from_truth(truth, "alice")
    assert exported.output == canonical_json(expected) + "\n"

    # edit the exported file, import it on top of version 1
    edited = from_json(json.loads(exported.output)).with_event(ClipEvent.NEEDLE_VISIBLE, 2)
    edited_file = tmp_path / "edited.json"
    edited_file.write_text(json.dumps(to_json(edited)), encoding="utf-8")
    second = run_json(
        data, db_url, "review", "import-json", str(edited_file), "--reviewer", "alice", "--base-version", "1"
    )
    assert [entry["version"] for entry in second] == [2]

    # the same file again on the old base is identical to the latest: nothing new
    again = run_json(
        data, db_url, "review", "import-json", str(edited_file), "--reviewer", "alice", "--base-version", "1"
    )
    assert [(entry["version"], entry["created"]) for entry in again] == [(2, False)]

    # another edit based on version 1 is stale
    other = expected.with_event(ClipEvent.NEEDLE_VISIBLE, 1)
    other_file = tmp_path / "other.json"
    other_file.write_text(canonical_json(other), encoding="utf-8")
    stale = run(
        data, db_url, "review", "import-json", str(other_file), "--reviewer", "alice", "--base-version", "1"
    )
    assert stale.exit_code == 1
    assert "based on version 1, but version 2 is now stored" in stale.output

    # a second reviewer, imported under her own name from alice's export
    assert run(data, db_url, "review", "import-json", str(other_file), "--reviewer", "bob").exit_code == 0

    status = run_json(
        data, db_url, "review", "status", uid, "--reviewer", "alice", "--set", "submitted", "--by", "alice"
    )
    assert status == [{"sop_instance_uid": uid, "reviewer": "alice", "status": "submitted", "by": "alice"}]
    refused = run(
        data, db_url, "review", "status", uid, "--reviewer", "alice", "--set", "needs-rework", "--by", "carol"
    )
    assert refused.exit_code == 1 and "expected a comment" in refused.output
    no_identity = run(data, db_url, "review", "status", uid, "--reviewer", "alice", "--set", "approved")
    assert no_identity.exit_code == 2 and "USARCHIVE_REVIEWER" in no_identity.output
    monkeypatch.setenv(ENV_REVIEWER, "carol")
    rework = run(
        data,
        db_url,
        "review",
        "status",
        uid,
        "--reviewer",
        "alice",
        "--set",
        "needs-rework",
        "--comment",
        "mark the tip on frame 5",
    )
    assert rework.exit_code == 0 and "needs-rework (by carol)" in rework.output

    assert run_json(data, db_url, "review", "list", "--status", "needs-rework") == [
        {
            "sop_instance_uid": uid,
            "reviewer": "alice",
            "status": "needs-rework",
            "latest_version": 4,
            "updated_at": run_json(data, db_url, "review", "list", "--reviewer", "alice")[0]["updated_at"],
        }
    ]
    assert [r["reviewer"] for r in run_json(data, db_url, "review", "list", "--status", "draft")] == ["bob"]
    table = run(data, db_url, "review", "list")
    assert table.exit_code == 0 and "2 annotation(s)" in table.output and "needs-rework" in table.output

    history = run_json(data, db_url, "review", "history", uid)
    assert [entry["reviewer"] for entry in history] == ["alice", "bob"]
    alice = history[0]
    assert [(v["version"], v["status"], v["saved_by"]) for v in alice["versions"]] == [
        (1, "draft", "alice"),
        (2, "draft", "alice"),
        (3, "submitted", "alice"),
        (4, "needs-rework", "carol"),
    ]
    assert [(c["author"], c["status_to"], c["text"]) for c in alice["comments"]] == [
        ("alice", "submitted", None),
        ("carol", "needs-rework", "mark the tip on frame 5"),
    ]
    text_history = run(data, db_url, "review", "history", uid, "--reviewer", "alice")
    assert (
        "4 version(s)" in text_history.output
        and "submitted -> needs-rework mark the tip" in text_history.output
    )

    first = run(data, db_url, "review", "export-json", uid, "--reviewer", "alice", "--version", "1")
    assert first.output == exported.output

    def found(*filters: str) -> list[str]:
        return [row["sop_instance_uid"] for row in run_json(data, db_url, "find", *filters)]

    assert found("--status", "needs-rework") == [uid]
    assert found("--status", "needs-rework", "--reviewer", "bob") == []
    assert found("--reviewer", "bob") == [uid]
    assert found("--status", "approved") == []


def test_review_errors_are_clean(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "data"
    missing = run(data, db_url, "review", "export-json", "1.2.3", "--reviewer", "alice")
    assert missing.exit_code == 1 and "no instance with SOP Instance UID 1.2.3" in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    refused = run(data, db_url, "review", "import-json", str(bad), "--reviewer", "alice")
    assert refused.exit_code == 1 and "expected annotation JSON, but it does not parse" in refused.output
    assert run_json(data, db_url, "review", "list") == []


CLIPS = ("c45_danger_mono", "l3_tt_inplane_jpeg", "l4_tt_inplane_mono")


@pytest.fixture
def archived(tmp_path: Path, db_url: str, sample_dir: Path) -> tuple[Path, list[Path], list[str]]:
    """An archive holding three sample clips; their ground-truth files and UIDs, in order."""
    data = tmp_path / "data"
    sources = [sample_dir / f"{name}.dcm" for name in CLIPS]
    assert run(data, db_url, "import", *map(str, sources)).exit_code == 0
    truths = [source.with_suffix(".json") for source in sources]
    return (
        data,
        truths,
        [GroundTruth.read(source.with_suffix(".json")).sop_instance_uid for source in sources],
    )


def test_import_json_and_status_take_many_items_in_one_call(
    db_url: str, archived: tuple[Path, list[Path], list[str]]
) -> None:
    data, truths, uids = archived
    files = list(map(str, truths))
    saved = run_json(
        data, db_url, "review", "import-json", *files, "--reviewer", "alice", "--from-phantom-truth"
    )
    assert [(s["sop_instance_uid"], s["version"], s["created"], s["status"]) for s in saved] == [
        (uid, 1, True, "draft") for uid in uids
    ]
    assert len({s["content_sha256"] for s in saved}) == 3

    again = run(data, db_url, "review", "import-json", *files, "--reviewer", "alice", "--from-phantom-truth")
    assert again.exit_code == 0
    assert again.output.splitlines() == [f"{uid} alice: identical to version 1" for uid in uids]

    submitted = run(
        data, db_url, "review", "status", *uids, "--reviewer", "alice", "--set", "submitted", "--by", "alice"
    )
    assert submitted.exit_code == 0
    assert submitted.output.splitlines() == [f"{uid} alice: submitted (by alice)" for uid in uids]
    approved = run_json(
        data, db_url, "review", "status", *uids, "--reviewer", "alice", "--set", "approved", "--by", "carol"
    )
    assert approved == [
        {"sop_instance_uid": uid, "reviewer": "alice", "status": "approved", "by": "carol"} for uid in uids
    ]
    listed = run_json(data, db_url, "review", "list", "--status", "approved")
    assert sorted(row["sop_instance_uid"] for row in listed) == sorted(uids)


def test_base_version_with_several_files_is_a_usage_error(
    db_url: str, archived: tuple[Path, list[Path], list[str]]
) -> None:
    data, truths, _ = archived
    refused = run(
        data,
        db_url,
        "review",
        "import-json",
        *map(str, truths[:2]),
        "--reviewer",
        "alice",
        "--from-phantom-truth",
        "--base-version",
        "1",
    )
    assert refused.exit_code == 2
    assert "expected a single FILE with --base-version" in refused.output and "2 were given" in refused.output
    assert run_json(data, db_url, "review", "list") == []
    missing = run(data, db_url, "review", "import-json", "--reviewer", "alice")
    assert missing.exit_code == 2 and "Missing argument 'FILE...'" in missing.output


def test_an_error_in_the_middle_stops_after_reporting_the_done_ones(
    tmp_path: Path, db_url: str, archived: tuple[Path, list[Path], list[str]]
) -> None:
    data, truths, uids = archived
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    files = [str(truths[0]), str(bad), str(truths[2])]

    text = run(data, db_url, "review", "import-json", *files, "--reviewer", "alice", "--from-phantom-truth")
    assert text.exit_code == 1
    assert text.stdout.splitlines() == [f"{uids[0]} alice: saved as version 1"]
    assert f"{bad}: expected annotation JSON, but it does not parse" in text.stderr
    assert "1 done before it, 1 after it not processed" in text.stderr
    assert [row["sop_instance_uid"] for row in run_json(data, db_url, "review", "list")] == [uids[0]]

    # JSON: the list of what was done, then the error; the first file is now identical
    as_json = run(
        data, db_url, "--json", "review", "import-json", *files, "--reviewer", "bob", "--from-phantom-truth"
    )
    assert as_json.exit_code == 1
    assert [(s["sop_instance_uid"], s["reviewer"]) for s in json.loads(as_json.stdout)] == [(uids[0], "bob")]
    assert str(bad) in as_json.stderr

    # status: the second clip has no annotation of alice's, so the third is left as it was
    status = run(
        data,
        db_url,
        "--json",
        "review",
        "status",
        *uids,
        "--reviewer",
        "alice",
        "--set",
        "submitted",
        "--by",
        "alice",
    )
    assert status.exit_code == 1
    assert json.loads(status.stdout) == [
        {"sop_instance_uid": uids[0], "reviewer": "alice", "status": "submitted", "by": "alice"}
    ]
    error = json.loads(status.stderr)  # under --json the error is JSON too, on stderr
    assert error["exit_code"] == 1 and error["error"].startswith(f"{uids[1]}: ")
    assert "1 done before it, 1 after it not processed" in error["error"]
    statuses = {
        row["sop_instance_uid"]: row["status"]
        for row in run_json(data, db_url, "review", "list", "--reviewer", "alice")
    }
    assert statuses == {uids[0]: "submitted"}
