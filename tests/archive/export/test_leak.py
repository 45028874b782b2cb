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

from archive.export.hdf5 import sidecar_path
from archive.export.hdf5_read import read_dataset
from archive.settings import ArchiveSettings


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
        return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    root = tmp_path_factory.mktemp("leak")
    settings, clips = build_archive(root)
    results = {
        fmt: run_cli(settings, "export", "--format", fmt, str(root / out), "--status", "any")
        for fmt, out in (("dicom", "dicom_out"), ("hdf5", "research.h5"), ("sr", "reports"))
    }
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
    assert len(reports) == 3  # alpha (rev1, rev3), beta (draft); gamma and delta have no annotation
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
