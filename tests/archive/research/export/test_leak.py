"""Must-show leak test of ``usarchive export``: planted identity never reaches a research export.

Phantom clips carry unique identifying strings in attributes, a private tag,
free text, descriptions and their burned-in banner (export_cases.py). They
are exported in every format through the command line; no planted string,
date or original UID may appear in any byte of the hdf5 and dicom outputs
(files and cards), and the banner pixels must be zero. The sr format is not
de-identified by design (it goes back to the hospital PACS): its test checks
that it carries the original clip's patient and study, and nothing beyond
the header's patient and study modules (no private tag, no image comments, no
operator, no pixels).

Staff identity and free text are planted too: an annotation of gamma by a
uniquely named reviewer with an adverse-event note, and an outcome of gamma's
study with an adverse-event description (through ``usarchive outcome
import``). The research formats carry the reviewer as a keyed pseudonym and
withhold the free text; ``--include-free-text`` exports the text verbatim and
the card says it is not de-identified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from export_cases import (
    IMAGE_COMMENT,
    PRIVATE_VALUE,
    SECRET_HEX,
    PlantedClip,
    all_bytes,
    banner_is_drawn,
    build_archive,
    dciodvfy,
    leaks,
    outside_region,
    region_window,
    run_cli,
)
from pydicom import dcmread

from archive.archive import Archive
from archive.model import NeedleView
from archive.research.export.hdf5 import sidecar_path
from archive.research.export.hdf5_read import read_dataset
from archive.research.export.redact import WITHHELD_ADVERSE_EVENT, WITHHELD_NOTE, reviewer_pseudonym
from archive.review import ClipAnnotation, NeedleMark
from archive.settings import ArchiveSettings

#: Staff identity and free text planted on gamma: reviewer, adverse-event note, outcome's adverse event.
STAFF_REVIEWER = "ZQXREVIEWER"
STAFF_NOTE = "ZQXADVERSENOTE patient ZQXNOTENAME called 2024-07-15"
OUTCOME_EVENT = "ZQXOUTCOMEEVENT nerve irritation told to ZQXEVENTNAME"
#: Frame of the planted adverse event.
STAFF_NOTE_FRAME = 3


@dataclass(frozen=True)
class Exported:
    root: Path
    settings: ArchiveSettings
    clips: dict[str, PlantedClip]
    results: dict[str, Result]

    def summary(self, fmt: str) -> dict[str, object]:
        document: dict[str, object] = json.loads(self.results[fmt].stdout)
        return document

    def needles(self) -> list[bytes]:
        found: list[bytes] = []
        for clip in self.clips.values():
            found.extend(clip.needles())
            ds = clip.dataset
            found.extend(
                str(uid).encode("ascii")
                for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID)
            )
        found.extend(text.encode("utf-8") for text in staff_needles())
        return found


def staff_needles() -> list[str]:
    """The planted reviewer name and free text, whole and in the parts a tool might copy."""
    return [STAFF_REVIEWER, STAFF_NOTE, "ZQXADVERSENOTE", "ZQXNOTENAME", OUTCOME_EVENT, "ZQXOUTCOMEEVENT"]


def _plant_staff_text(root: Path, settings: ArchiveSettings, gamma: PlantedClip) -> None:
    ds = gamma.dataset
    annotation = ClipAnnotation.new(gamma.uid, STAFF_REVIEWER, int(ds.NumberOfFrames), (ds.Rows, ds.Columns))
    # A needle mark gives the sr report a measurement (an angle); the rest is the planted text.
    annotation = annotation.with_needle(2, NeedleMark(((60.0, 50.0), (110.0, 120.0)), NeedleView.IN_PLANE))
    with Archive.open(settings) as archive:
        archive.annotations.save(
            annotation.with_adverse_event(STAFF_NOTE_FRAME, STAFF_NOTE), base_version=None
        )
    csv_path = root / "outcomes.csv"
    csv_path.write_text(
        "study_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event\n"
        f'{ds.StudyInstanceUID},right,6,4,2,40,30,20,"{OUTCOME_EVENT}"\n',
        encoding="utf-8",
    )
    imported = run_cli(settings, "outcome", "import", str(csv_path))
    assert imported.exit_code == 0, imported.output


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    root = tmp_path_factory.mktemp("leak")
    settings, clips = build_archive(root)
    _plant_staff_text(root, settings, clips["gamma"])
    results = {
        fmt: run_cli(settings, "export", "--format", fmt, str(root / out), "--status", "any")
        for fmt, out in (("dicom", "dicom_out"), ("hdf5", "research.h5"), ("sr", "reports"))
    }
    results["hdf5-free-text"] = run_cli(
        settings,
        "export",
        "--format",
        "hdf5",
        str(root / "free.h5"),
        "--status",
        "any",
        "--include-free-text",
    )
    for fmt, out in (("dicom", "dicom_reviewer"), ("hdf5", "reviewer.h5")):
        results[f"{fmt}-reviewer"] = run_cli(
            settings,
            "export",
            "--format",
            fmt,
            str(root / out),
            "--status",
            "draft",
            "--reviewer",
            STAFF_REVIEWER,
        )
    return Exported(root, settings, clips, results)


def test_the_originals_carry_the_planted_identity(exported: Exported) -> None:
    stored = exported.settings.data_dir / "store"
    originals = b"".join(data for _, data in all_bytes(stored))
    for clip in exported.clips.values():
        text_needles = [
            n for n in clip.needles() if b"-" not in n
        ]  # the YYYY-MM-DD forms are in the banner only
        assert leaks(originals, text_needles) == text_needles
    assert banner_is_drawn(exported.clips["alpha"].dataset)
    assert banner_is_drawn(exported.clips["beta"].dataset)


def test_the_uncalibrated_clip_is_refused_in_research_formats(exported: Exported) -> None:
    delta = exported.clips["delta"].uid
    for fmt in ("dicom", "hdf5"):
        assert exported.results[fmt].exit_code == 1, exported.results[fmt].output
        refused = exported.summary(fmt)["refused"]
        assert isinstance(refused, list)
        assert [problem["sop_instance_uid"] for problem in refused] == [delta]
        assert exported.summary(fmt)["written"] == 3


def test_no_planted_string_date_or_uid_in_the_dicom_export(exported: Exported) -> None:
    files = list(all_bytes(exported.root / "dicom_out"))
    assert len([p for p, _ in files if p.suffix == ".dcm"]) == 3
    assert any(p.name == "export-card.md" for p, _ in files)
    for path, data in files:
        assert leaks(data, exported.needles()) == [], path


def test_no_planted_string_date_or_uid_in_the_hdf5_export_or_its_card(exported: Exported) -> None:
    h5 = exported.root / "research.h5"
    for path in (h5, sidecar_path(h5)):
        assert leaks(path.read_bytes(), exported.needles()) == [], path
    with read_dataset(h5) as dataset:
        assert len(dataset) == 4  # alpha twice (two reviewers), beta, gamma


def test_dicom_banner_pixels_are_zero_and_the_region_is_kept(exported: Exported) -> None:
    for path in sorted((exported.root / "dicom_out").rglob("*.dcm")):
        ds = dcmread(path)
        assert ds.BurnedInAnnotation == "NO"
        assert "113101" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        frames = ds.pixel_array
        window = region_window(ds)
        assert not outside_region(frames, window).any(), path
        assert frames[(slice(None), *window)].any(), f"{path}: the region is blank too"


def test_hdf5_banner_pixels_are_zero_and_the_region_is_kept(exported: Exported) -> None:
    window = region_window(exported.clips["alpha"].dataset)  # every phantom has the same layout
    with read_dataset(exported.root / "research.h5") as dataset:
        for clip in dataset:
            frames = np.asarray(clip.frames[:])
            assert not outside_region(frames, window).any(), clip.clip_key
            assert frames[(slice(None), *window)].any(), clip.clip_key
            assert clip.metadata["pixels_cleaned"] is True


def test_dicom_export_passes_dciodvfy(exported: Exported) -> None:
    for path in sorted((exported.root / "dicom_out").rglob("*.dcm")):
        output, errors = dciodvfy(path)
        assert "US" in output, output
        assert errors == [], f"{path}:\n{output}"


def test_reports_carry_the_original_patient_and_study_but_no_other_identity(exported: Exported) -> None:
    result = exported.results["sr"]
    assert result.exit_code == 0, result.output
    reports = sorted((exported.root / "reports").glob("*.dcm"))
    assert len(reports) == 4  # alpha (rev1, rev3), beta (rev2), gamma (staff); delta has no annotation
    originals = {clip.uid: clip for clip in exported.clips.values()}
    for path in reports:
        data = path.read_bytes()
        ds = dcmread(path)
        evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        clip = originals[evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
        assert ds.PatientID == clip.identity.patient_id  # goes back to the PACS with the clip
        assert ds.StudyInstanceUID == clip.dataset.StudyInstanceUID
        assert "PixelData" not in ds
        assert leaks(data, [PRIVATE_VALUE.encode(), IMAGE_COMMENT.encode()]) == []
        assert leaks(data, [part.encode() for part in clip.identity.operator.split("^")]) == []
        output, errors = dciodvfy(path)
        assert "ComprehensiveSR" in output, output
        assert errors == [], output


def test_reviewer_is_a_keyed_pseudonym_and_free_text_is_withheld(exported: Exported) -> None:
    staff = reviewer_pseudonym(bytes.fromhex(SECRET_HEX), STAFF_REVIEWER)
    assert staff.startswith("R-") and STAFF_REVIEWER not in staff
    with read_dataset(exported.root / "research.h5") as dataset:
        reviewers = sorted(str(clip.metadata["reviewer"]) for clip in dataset)
        assert all(name.startswith("R-") for name in reviewers), reviewers
        gamma = [clip for clip in dataset if clip.metadata["reviewer"] == staff]
        assert len(gamma) == 1
        annotation = gamma[0].annotation()
        assert annotation is not None and annotation.reviewer == staff
        assert [(a.frame, a.note) for a in annotation.adverse_events] == [
            (STAFF_NOTE_FRAME, WITHHELD_NOTE.format(number=1))
        ]
        assert gamma[0].metadata["has_outcome"] is True
        assert gamma[0].metadata["outcome_adverse_event"] == WITHHELD_ADVERSE_EVENT
        assert gamma[0].metadata["outcome_vas_pre"] == 6.0  # the scores are kept
    card = sidecar_path(exported.root / "research.h5").read_text(encoding="utf-8")
    assert "Free text withheld" in card and "NOT de-identified" not in card


def test_reviewer_filter_is_named_by_its_pseudonym_in_the_cards(exported: Exported) -> None:
    staff = reviewer_pseudonym(bytes.fromhex(SECRET_HEX), STAFF_REVIEWER)
    needles = [text.encode("utf-8") for text in staff_needles()]
    h5 = exported.root / "reviewer.h5"
    dicom_dir = exported.root / "dicom_reviewer"
    for fmt, card_path, outputs in (
        ("dicom", dicom_dir / "export-card.md", [dicom_dir]),
        ("hdf5", sidecar_path(h5), [h5, sidecar_path(h5)]),
    ):
        result = exported.results[f"{fmt}-reviewer"]
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["written"] == 1
        card = card_path.read_text(encoding="utf-8")
        assert f"--reviewer {staff}" in card
        for output in outputs:
            for path, data in all_bytes(output):
                assert leaks(data, needles) == [], path


def test_include_free_text_exports_it_verbatim_and_the_card_warns(exported: Exported) -> None:
    result = exported.results["hdf5-free-text"]
    assert result.exit_code == 1, result.output  # delta is refused, as in the default export
    h5 = exported.root / "free.h5"
    card = sidecar_path(h5).read_text(encoding="utf-8")
    assert "free text included verbatim: NOT de-identified" in card
    data = h5.read_bytes()
    free_text = [STAFF_NOTE.encode(), OUTCOME_EVENT.encode()]
    assert leaks(data, free_text) == free_text  # the leak check finds planted text when it is there
    assert leaks(data + card.encode(), [STAFF_REVIEWER.encode()]) == []  # the reviewer stays a pseudonym
    with read_dataset(h5) as dataset:
        notes = [
            event.note
            for clip in dataset
            if (annotation := clip.annotation()) is not None
            for event in annotation.adverse_events
        ]
        assert notes == [STAFF_NOTE]
        events = {clip.metadata["outcome_adverse_event"] for clip in dataset}
        assert OUTCOME_EVENT in events


def test_include_free_text_is_refused_outside_hdf5(exported: Exported, tmp_path: Path) -> None:
    result = run_cli(
        exported.settings, "export", "--format", "dicom", str(tmp_path / "d"), "--include-free-text"
    )
    assert result.exit_code == 2 and "--include-free-text" in result.output
    assert not (tmp_path / "d").exists()
