"""``usarchive propose`` and ``usarchive review accept-proposal`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner, Result
from pydicom.uid import generate_uid

from archive.archive import Archive
from archive.cli.main import main
from archive.phantom.truth import GroundTruth
from archive.review import PROPOSAL_REVIEWER
from archive.review.store import ENV_REVIEWER
from archive.settings import ArchiveSettings

CLIP = "l4_tt_inplane_mono"  # 30 frames


def run(data_dir: Path, db_url: str, *args: str) -> Result:
    root = ["--data-dir", str(data_dir), "--db", db_url]
    if not (data_dir / "store").is_dir():
        assert CliRunner().invoke(main, [*root, "init"], catch_exceptions=False).exit_code == 0
    return CliRunner().invoke(main, [*root, *args], catch_exceptions=False)


@pytest.fixture
def archived(
    tmp_path: Path, db_url: str, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str]:
    monkeypatch.delenv(ENV_REVIEWER, raising=False)
    data = tmp_path / "data"
    source = sample_dir / f"{CLIP}.dcm"
    assert run(data, db_url, "import", str(source)).exit_code == 0
    return data, GroundTruth.read(source.with_suffix(".json")).sop_instance_uid


def _check_shape(document: Any, uid: str, frames: list[int]) -> None:
    """Exactly the documented keys and types, frames 1-based."""
    assert list(document) == ["sop_instance_uid", "frames", "spread"]
    assert document["sop_instance_uid"] == uid
    assert [f["frame"] for f in document["frames"]] == frames
    for entry in document["frames"]:
        assert list(entry) == ["frame", "tip", "shaft", "score"]
        assert isinstance(entry["frame"], int) and isinstance(entry["score"], float)
        if entry["tip"] is None:
            assert entry["shaft"] is None
        else:
            assert len(entry["tip"]) == 2 and all(isinstance(v, float) for v in entry["tip"])
            if entry["shaft"] is not None:
                assert len(entry["shaft"]) == 2
                assert all(len(p) == 2 and all(isinstance(v, float) for v in p) for p in entry["shaft"])
                assert entry["shaft"][1] == entry["tip"]
    for entry in document["spread"]:
        assert list(entry) == ["frame", "area_mm2"]
        assert isinstance(entry["frame"], int) and entry["frame"] in frames
        assert entry["area_mm2"] is None or isinstance(entry["area_mm2"], float)


def test_json_is_exactly_the_documented_shape_both_ways(archived: tuple[Path, str], db_url: str) -> None:
    data, uid = archived
    before = run(data, db_url, "--json", "propose", uid[:30], "--frames", "10-20")
    assert before.exit_code == 0, before.output
    document = json.loads(before.output)
    _check_shape(document, uid, list(range(10, 21)))
    assert any(f["tip"] is not None for f in document["frames"])  # the phantom's needle is found

    after = run(data, db_url, "propose", uid, "--json")
    assert after.exit_code == 0, after.output
    whole = json.loads(after.output)
    _check_shape(whole, uid, list(range(1, 31)))
    assert whole["spread"] and any(s["area_mm2"] is not None for s in whole["spread"])

    # what was printed is what was stored, as version 2 of reviewer 'auto'
    with Archive.open(ArchiveSettings(data, db_url)) as archive:
        stored = archive.proposals.load(uid)
        assert stored is not None and stored.version == 2
        found = {f["frame"] - 1: f["tip"] for f in whole["frames"] if f["tip"] is not None}
        assert set(stored.annotation.keyframes("needle")) == set(found)
        assert [list(stored.annotation.needle[i].tip) for i in sorted(found)] == [
            found[i] for i in sorted(found)
        ]
        assert archive.annotations.list_reviews() == []


def test_text_output_and_bad_ranges(archived: tuple[Path, str], db_url: str) -> None:
    data, uid = archived
    text = run(data, db_url, "propose", uid, "--frames", "5-8", "--approach", "out-of-plane", "--by", "alice")
    assert text.exit_code == 0, text.output
    assert "proposal saved as version 1 of reviewer 'auto'" in text.output and "out-of-plane" in text.output
    assert "of 4 frame(s)" in text.output
    bad = run(data, db_url, "propose", uid, "--frames", "ten")
    assert bad.exit_code == 2 and "expected FIRST-LAST" in bad.output
    outside = run(data, db_url, "propose", uid, "--frames", "20-40")
    assert outside.exit_code == 1 and "1 <= FIRST <= LAST <= 30" in outside.output
    unknown = run(data, db_url, "propose", "9.9.9")
    assert unknown.exit_code == 1
    history = run(data, db_url, "--json", "review", "history", uid)
    (entry,) = json.loads(history.output)
    assert entry["reviewer"] == PROPOSAL_REVIEWER and entry["versions"][0]["saved_by"] == "alice"


def test_accept_proposal_copies_a_range_into_the_reviewers_annotation(
    archived: tuple[Path, str], db_url: str
) -> None:
    data, uid = archived
    refused = run(data, db_url, "review", "accept-proposal", uid, "--by", "carol")
    assert refused.exit_code == 1 and "has no proposal" in refused.output
    proposed = json.loads(run(data, db_url, "--json", "propose", uid).output)
    accepted = run(
        data, db_url, "--json", "review", "accept-proposal", uid[:25], "--frames", "10-20", "--by", "carol"
    )
    assert accepted.exit_code == 0, accepted.output
    document = json.loads(accepted.output)
    expected = [f["frame"] for f in proposed["frames"] if f["tip"] is not None and 10 <= f["frame"] <= 20]
    assert expected and document["needle_frames"] == expected
    assert (document["reviewer"], document["version"], document["proposal_version"]) == ("carol", 1, 1)
    listed = json.loads(run(data, db_url, "--json", "review", "list").output)
    assert [(r["reviewer"], r["status"]) for r in listed] == [("carol", "draft")]
    with_proposals = json.loads(run(data, db_url, "--json", "review", "list", "--proposals").output)
    assert {r["reviewer"] for r in with_proposals} == {"carol", PROPOSAL_REVIEWER}
    anonymous = run(data, db_url, "review", "accept-proposal", uid)
    assert anonymous.exit_code == 2 and "--by NAME" in anonymous.output
    as_auto = run(data, db_url, "review", "accept-proposal", uid, "--by", "auto")
    assert as_auto.exit_code == 1 and "reserved for automatic proposals" in as_auto.output


def test_an_uncalibrated_clip_is_proposed_in_pixels_and_says_so(
    tmp_path: Path, db_url: str, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_REVIEWER, raising=False)
    ds = pydicom.dcmread(sample_dir / f"{CLIP}.dcm")
    del ds.SequenceOfUltrasoundRegions
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    source = tmp_path / "uncalibrated.dcm"
    ds.save_as(source)
    data = tmp_path / "data"
    assert run(data, db_url, "import", str(source)).exit_code == 0
    text = run(data, db_url, "propose", str(ds.SOPInstanceUID))
    assert text.exit_code == 0, text.output
    assert "units px" in text.output
    document = json.loads(run(data, db_url, "--json", "propose", str(ds.SOPInstanceUID)).output)
    _check_shape(document, str(ds.SOPInstanceUID), list(range(1, 31)))
    assert all(s["area_mm2"] is None for s in document["spread"])
    assert any(f["tip"] is not None for f in document["frames"])


def test_a_clip_whose_pixels_do_not_decode_is_a_one_line_error(
    tmp_path: Path, db_url: str, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_REVIEWER, raising=False)
    ds = pydicom.dcmread(sample_dir / f"{CLIP}.dcm")
    ds.PixelData = bytes(ds.PixelData)[: len(ds.PixelData) // 2]  # half the frames' bytes
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    source = tmp_path / "truncated.dcm"
    ds.save_as(source)
    data = tmp_path / "data"
    assert run(data, db_url, "import", str(source)).exit_code == 0
    result = run(data, db_url, "propose", str(ds.SOPInstanceUID))
    assert result.exit_code == 1
    assert "expected pixel data this installation can decode" in result.output
    assert "Traceback" not in result.output
    with Archive.open(ArchiveSettings(data, db_url)) as archive:
        assert archive.proposals.load(str(ds.SOPInstanceUID)) is None
