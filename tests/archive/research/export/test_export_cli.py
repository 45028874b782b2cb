"""``usarchive export`` on an SQLite archive of phantom clips: selection, secret, refusals, sending."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from export_cases import SECRET_HEX, PlantedClip, build_archive, dciodvfy, run_cli
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage
from pynetdicom import AE, evt

from archive.analysis.outcomes.sql import set_outcome
from archive.archive import Archive
from archive.model import Side
from archive.research.export.hdf5 import sidecar_path
from archive.research.export.hdf5_read import read_dataset
from archive.research.export.redact import reviewer_pseudonym
from archive.settings import ArchiveSettings


@dataclass(frozen=True)
class ArchiveCase:
    root: Path
    settings: ArchiveSettings
    clips: dict[str, PlantedClip]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> ArchiveCase:
    root = tmp_path_factory.mktemp("export_cli")
    settings, clips = build_archive(root)
    with Archive.open(settings) as opened:
        values = {"vas_pre": 7.0, "vas_2w": 2.0, "odi_pre": 40.0, "odi_2w": 20.0}
        set_outcome(opened.engine, clips["alpha"].dataset.StudyInstanceUID, Side.RIGHT, values, source="test")
    return ArchiveCase(root, settings, clips)


def pseudonyms(*reviewers: str) -> list[str]:
    """The reviewers' keyed pseudonyms under the test secret, in the order given."""
    return [reviewer_pseudonym(bytes.fromhex(SECRET_HEX), name) for name in reviewers]


def summary_of(stdout: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stdout)
    return document


def refused_uids(summary: dict[str, Any]) -> list[str]:
    return [problem["sop_instance_uid"] for problem in summary["refused"]]


# -- the secret ----------------------------------------------------------------------------------


def test_missing_secret_is_refused_naming_both_ways_to_give_it(archive: ArchiveCase, tmp_path: Path) -> None:
    result = run_cli(archive.settings, "export", "--format", "dicom", str(tmp_path / "out"), secret=None)
    assert result.exit_code != 0
    assert "USARCHIVE_DEID_SECRET" in result.output and "--secret-file" in result.output
    assert not (tmp_path / "out").exists()


def test_short_secret_is_refused_without_printing_it(archive: ArchiveCase, tmp_path: Path) -> None:
    result = run_cli(
        archive.settings, "export", "--format", "hdf5", str(tmp_path / "o.h5"), secret="ZQXshort"
    )
    assert result.exit_code != 0
    assert "at least 16 bytes" in result.output
    assert "ZQXshort" not in result.output


def test_secret_file_gives_the_same_pseudonyms_as_the_environment(
    archive: ArchiveCase, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET_HEX + "\n", encoding="utf-8")
    from_env = run_cli(archive.settings, "export", "--format", "dicom", str(tmp_path / "env"))
    from_file = run_cli(
        archive.settings,
        "export",
        "--format",
        "dicom",
        str(tmp_path / "file"),
        "--secret-file",
        str(secret_file),
        secret=None,
    )
    assert from_env.exit_code == 0 and from_file.exit_code == 0, from_file.output
    names = [
        sorted(p.relative_to(d).as_posix() for d in [tmp_path / n] for p in d.rglob("*.dcm"))
        for n in ("env", "file")
    ]
    assert names[0] == names[1] and len(names[0]) == 1
    other_file = tmp_path / "other.txt"
    other_file.write_text("a different secret of enough length", encoding="utf-8")
    other = run_cli(
        archive.settings,
        "export",
        "--format",
        "dicom",
        str(tmp_path / "other"),
        "--secret-file",
        str(other_file),
    )
    assert other.exit_code == 0
    assert (
        sorted(p.relative_to(tmp_path / "other").as_posix() for p in (tmp_path / "other").rglob("*.dcm"))
        != names[0]
    )


# -- selection by review status --------------------------------------------------------------------


def test_default_exports_approved_annotations_only(archive: ArchiveCase, tmp_path: Path) -> None:
    out = tmp_path / "approved.h5"
    result = run_cli(archive.settings, "export", "--format", "hdf5", str(out))
    assert result.exit_code == 0, result.output
    assert summary_of(result.stdout)["written"] == 1
    with read_dataset(out) as dataset:
        clips = {clip.metadata["reviewer"]: clip for clip in dataset}
        # one record per reviewer of the one approved clip, named by keyed pseudonyms
        assert sorted(clips) == sorted(pseudonyms("rev1", "rev3"))
        keys = sorted(clip.clip_key for clip in clips.values())
        assert keys[0].split("~")[0] == keys[1].split("~")[0]
        assert sorted(key.split("~")[1] for key in keys) == sorted(pseudonyms("rev1", "rev3"))
        for clip in clips.values():
            assert clip.metadata["status"] == "approved"
            annotation = clip.annotation()
            assert annotation is not None and annotation.needle
            assert clip.metrics["tip_to_target_at_injection_start_mm"] is not None
            assert clip.metrics["needle_angle_deg"] is not None
            assert clip.pixel_size_mm is not None
            assert clip.metadata["has_outcome"] is True  # the study's outcome on the clip's side
            assert (clip.metadata["outcome_vas_pre"], clip.metadata["outcome_vas_2w"]) == (7.0, 2.0)
            assert clip.metadata["outcome_effective"] is True


def test_status_any_also_exports_unannotated_clips(archive: ArchiveCase, tmp_path: Path) -> None:
    out = tmp_path / "any.h5"
    result = run_cli(
        archive.settings, "export", "--format", "hdf5", str(out), "--status", "any", "--allow-uncalibrated"
    )
    assert result.exit_code == 0, result.output
    with read_dataset(out) as dataset:
        reviewers = sorted(str(clip.metadata["reviewer"]) for clip in dataset)
        assert reviewers == sorted(["None", "None", *pseudonyms("rev1", "rev2", "rev3")])
    with read_dataset(out) as dataset:
        annotated = sorted(bool(clip.metadata["has_annotation"]) for clip in dataset)
        assert annotated == [False, False, True, True, True]
        statuses = sorted(str(clip.metadata["status"]) for clip in dataset)
        assert statuses == ["None", "None", "approved", "approved", "draft"]
        with_outcome = sorted(
            str(clip.metadata["reviewer"]) for clip in dataset if clip.metadata["has_outcome"]
        )
        assert with_outcome == sorted(pseudonyms("rev1", "rev3"))  # only alpha's study has an outcome


def test_filters_as_in_find_select_the_clips(archive: ArchiveCase, tmp_path: Path) -> None:
    beta = archive.clips["beta"]
    result = run_cli(
        archive.settings,
        "export",
        "--format",
        "dicom",
        str(tmp_path / "one"),
        "--status",
        "any",
        "--patient",
        beta.identity.patient_id,
    )
    assert result.exit_code == 0, result.output
    assert summary_of(result.stdout)["clips"] == 1
    card = (tmp_path / "one" / "export-card.md").read_text(encoding="utf-8")
    assert "--patient <given>" in card and beta.identity.patient_id not in card
    nobody = run_cli(
        archive.settings, "export", "--format", "dicom", str(tmp_path / "none"), "--reviewer", "rev2"
    )
    assert nobody.exit_code == 0 and summary_of(nobody.stdout)["clips"] == 0  # rev2's only review is a draft


# -- uncalibrated clips ----------------------------------------------------------------------------


def test_uncalibrated_clip_is_refused_naming_it_and_exit_is_nonzero(
    archive: ArchiveCase, tmp_path: Path
) -> None:
    delta = archive.clips["delta"].uid
    result = run_cli(
        archive.settings, "export", "--format", "dicom", str(tmp_path / "out"), "--status", "any"
    )
    assert result.exit_code == 1
    summary = summary_of(result.stdout)
    assert refused_uids(summary) == [delta]
    assert "--allow-uncalibrated" in summary["refused"][0]["reason"]
    assert summary["written"] == 3 and len(list((tmp_path / "out").rglob("*.dcm"))) == 3


def test_uncalibrated_clip_refusal_is_printed_without_json(archive: ArchiveCase, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from archive.cli.main import main

    result = CliRunner().invoke(
        main,
        [
            "--data-dir",
            str(archive.settings.data_dir),
            "export",
            "--format",
            "hdf5",
            str(tmp_path / "o.h5"),
            "--status",
            "any",
        ],
        env={"USARCHIVE_DEID_SECRET": SECRET_HEX, "USARCHIVE_DB": ""},
    )
    assert result.exit_code == 1
    assert f"REFUSED {archive.clips['delta'].uid}" in result.stdout
    assert "3 clip(s) written" in result.stdout


def test_allowed_uncalibrated_clip_is_marked_not_pixel_cleaned(archive: ArchiveCase, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        archive.settings, "export", "--format", "dicom", str(out), "--status", "any", "--allow-uncalibrated"
    )
    assert result.exit_code == 0, result.output
    summary = summary_of(result.stdout)
    assert summary["written"] == 4 and summary["not_pixel_cleaned"] == 1
    uncleaned = [
        p
        for p in out.rglob("*.dcm")
        if "113101" not in [c.CodeValue for c in dcmread(p).DeidentificationMethodCodeSequence]
    ]
    assert len(uncleaned) == 1
    assert dcmread(uncleaned[0]).get("BurnedInAnnotation") != "NO"
    card = (out / "export-card.md").read_text(encoding="utf-8")
    assert uncleaned[0].relative_to(out).as_posix() in card

    h5 = tmp_path / "out.h5"
    result = run_cli(
        archive.settings, "export", "--format", "hdf5", str(h5), "--status", "any", "--allow-uncalibrated"
    )
    assert result.exit_code == 0, result.output
    with read_dataset(h5) as dataset:
        flags = sorted(bool(clip.metadata["pixels_cleaned"]) for clip in dataset)
        assert flags == [False, True, True, True, True]
        (key,) = [clip.clip_key for clip in dataset if not clip.metadata["pixels_cleaned"]]
    assert key in sidecar_path(h5).read_text(encoding="utf-8")


# -- outputs ---------------------------------------------------------------------------------------


def test_existing_outputs_are_not_overwritten(archive: ArchiveCase, tmp_path: Path) -> None:
    out = tmp_path / "taken.h5"
    out.write_bytes(b"keep me")
    result = run_cli(archive.settings, "export", "--format", "hdf5", str(out))
    assert result.exit_code != 0 and "--overwrite" in result.output
    assert out.read_bytes() == b"keep me"
    assert run_cli(archive.settings, "export", "--format", "hdf5", str(out), "--overwrite").exit_code == 0
    assert out.read_bytes() != b"keep me"
    folder = tmp_path / "full"
    folder.mkdir()
    (folder / "x.txt").write_text("x", encoding="utf-8")
    result = run_cli(archive.settings, "export", "--format", "dicom", str(folder))
    assert result.exit_code != 0 and "not empty" in result.output
    assert [p.name for p in folder.iterdir()] == ["x.txt"]
    assert not (tmp_path / "full.partial").exists()


def test_send_to_is_only_for_reports(archive: ArchiveCase, tmp_path: Path) -> None:
    result = run_cli(
        archive.settings,
        "export",
        "--format",
        "dicom",
        str(tmp_path / "o"),
        "--send-to",
        "PACS@127.0.0.1:104",
    )
    assert result.exit_code == 2 and "--format sr" in result.output
    result = run_cli(
        archive.settings, "export", "--format", "sr", str(tmp_path / "o"), "--send-to", "PACS@nowhere"
    )
    assert result.exit_code == 1 and "AE@host:port" in result.output


# -- measurement reports ---------------------------------------------------------------------------


@dataclass
class StorageSCP:
    port: int = 0
    received: list[Dataset] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def scp() -> Iterator[StorageSCP]:
    state = StorageSCP()
    ae = AE(ae_title="PACS")
    ae.add_supported_context(ComprehensiveSRStorage)

    def handle_store(event: Any) -> int:
        with state.lock:
            state.received.append(event.dataset)
        return 0x0000

    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    assert server is not None
    state.port = server.server_address[1]
    try:
        yield state
    finally:
        server.shutdown()


def test_reports_are_written_checked_and_sent(archive: ArchiveCase, tmp_path: Path, scp: StorageSCP) -> None:
    out = tmp_path / "reports"
    result = run_cli(
        archive.settings,
        "export",
        "--format",
        "sr",
        str(out),
        "--status",
        "any",
        "--send-to",
        f"PACS@127.0.0.1:{scp.port}",
    )
    assert result.exit_code == 0, result.output
    summary = summary_of(result.stdout)
    assert summary["written"] == 3 and summary["sent"] == 3
    skipped = sorted(problem["sop_instance_uid"] for problem in summary["skipped"])
    assert skipped == sorted([archive.clips["gamma"].uid, archive.clips["delta"].uid])
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 3
    with scp.lock:
        received = {str(ds.SOPInstanceUID): ds for ds in scp.received}
    assert set(received) == {str(dcmread(p).SOPInstanceUID) for p in files}
    for ds in received.values():
        assert ds.SOPClassUID == ComprehensiveSRStorage
        assert ds.ContentSequence  # the measurement report itself
    for path in files:
        output, errors = dciodvfy(path)
        assert "ComprehensiveSR" in output and errors == [], output
    assert "NOT de-identified" in (out / "export-card.md").read_text(encoding="utf-8")


def test_report_of_an_unreachable_pacs_is_written_and_refused(archive: ArchiveCase, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a free port with nobody listening once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli(
        archive.settings,
        "export",
        "--format",
        "sr",
        str(tmp_path / "r"),
        "--send-to",
        f"PACS@127.0.0.1:{port}",
    )
    assert result.exit_code == 1
    summary = summary_of(result.stdout)
    assert refused_uids(summary) == [archive.clips["alpha"].uid] * 2 and summary["sent"] == 0
    assert [problem["reviewer"] for problem in summary["refused"]] == ["rev1", "rev3"]
    assert len(list((tmp_path / "r").glob("*.dcm"))) == 2  # written, not stored
