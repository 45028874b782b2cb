"""An archive of phantom clips with planted identity, for the ``usarchive export`` tests.

Four clips, imported through :meth:`Archive.ingest` and annotated through the
annotation store:

======  ==============================  ===========  =========================================
name    encoding                        calibrated   annotation
======  ==============================  ===========  =========================================
alpha   Explicit VR LE, MONOCHROME2     yes          approved (``rev1`` and ``rev3``)
beta    JPEG Baseline (YBR_FULL_422)    yes          draft (``rev2``)
gamma   Explicit VR LE                  yes          none
delta   Explicit VR LE                  NO regions   none
======  ==============================  ===========  =========================================

Every clip carries unique identifying strings (:data:`PLANTED`) in its
attributes, a private tag, free-text and descriptions, and its burned-in
banner (name, ID, birth date, institution, study date).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from click.testing import CliRunner, Result
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from archive.archive import Archive, Origin
from archive.cli.main import main
from archive.ingest import IngestOutcome
from archive.model import ReviewStatus, SpinalLevel
from archive.phantom import generate_clip
from archive.phantom.spec import ClipSpec, Descriptions, Encoding, PatientIdentity
from archive.phantom.to_annotation import annotation_from_truth
from archive.settings import ArchiveSettings

Reviews = tuple[tuple[str, ReviewStatus], ...]

#: 32 hex digits: decoded as a 16-byte secret.
SECRET_HEX = "00112233445566778899aabbccddeeff"
#: Private creator and value planted in every clip.
PRIVATE_CREATOR = "ZQX PRIVATE CREATOR"
PRIVATE_VALUE = "ZQXPRIVATEVALUE"
#: Free text planted in Patient Comments (Patient module) and Image Comments (General Image module).
COMMENT = "ZQXCOMMENT patient is the mayor"
IMAGE_COMMENT = "ZQXIMAGECOMMENT the mayor again"


@dataclass(frozen=True)
class PlantedClip:
    """One phantom clip of the test archive and what was planted in it."""

    name: str
    identity: PatientIdentity
    descriptions: Descriptions
    study_date: dt.date
    dataset: Dataset
    calibrated: bool
    reviews: dict[str, ReviewStatus]

    @property
    def uid(self) -> str:
        """Original SOP Instance UID."""
        return str(self.dataset.SOPInstanceUID)

    def needles(self) -> list[bytes]:
        """Every planted string and date, as bytes (UTF-8), none of which may leak."""
        who = self.identity
        texts = [
            who.patient_name,
            *who.patient_name.split("^"),
            who.patient_id,
            who.accession,
            who.institution,
            *who.operator.split("^"),
            self.descriptions.study,
            self.descriptions.series,
            self.descriptions.performed_step,
            self.descriptions.protocol,
            PRIVATE_CREATOR,
            PRIVATE_VALUE,
            COMMENT,
            IMAGE_COMMENT,
            f"{who.birth_date:%Y%m%d}",
            f"{who.birth_date:%Y-%m-%d}",
            f"{self.study_date:%Y%m%d}",
            f"{self.study_date:%Y-%m-%d}",
        ]
        return [text.encode("utf-8") for text in texts]


def _identity(tag: str, birth: dt.date) -> PatientIdentity:
    return PatientIdentity(
        patient_name=f"ZQX{tag}NAME^ZQX{tag}GIVEN",
        patient_id=f"ZQX{tag}PID",
        birth_date=birth,
        sex="F",
        accession=f"ZQX{tag}ACC",
        institution=f"ZQX {tag} Hospital",
        operator=f"ZQX{tag}OPER^ZQX{tag}OPGIVEN",
    )


def _descriptions(tag: str) -> Descriptions:
    return Descriptions(
        study=f"ZQX{tag} study mayor",
        series=f"ZQX{tag} series",
        performed_step=f"ZQX{tag} step",
        protocol=f"ZQX{tag} protocol",
    )


_APPROVED, _DRAFT = ReviewStatus.APPROVED, ReviewStatus.DRAFT
#: name -> (encoding, calibrated, reviews (reviewer, status), birth date, study date)
_PLAN: dict[str, tuple[Encoding, bool, Reviews, dt.date, dt.date]] = {
    "alpha": (
        Encoding.EXPLICIT_MONO,
        True,
        (("rev1", _APPROVED), ("rev3", _APPROVED)),
        dt.date(1953, 7, 19),
        dt.date(2024, 5, 6),
    ),
    "beta": (Encoding.JPEG_BASELINE, True, (("rev2", _DRAFT),), dt.date(1948, 2, 3), dt.date(2024, 6, 11)),
    "gamma": (Encoding.EXPLICIT_MONO, True, (), dt.date(1970, 12, 24), dt.date(2024, 7, 15)),
    "delta": (Encoding.EXPLICIT_MONO, False, (), dt.date(1961, 9, 30), dt.date(2024, 8, 19)),
}


def _plant(ds: Dataset, calibrated: bool) -> None:
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    ds.ImageComments = IMAGE_COMMENT
    ds.PatientComments = COMMENT
    if not calibrated:
        del ds.SequenceOfUltrasoundRegions


def build_archive(root: Path) -> tuple[ArchiveSettings, dict[str, PlantedClip]]:
    """Generate, plant, ingest and annotate the four clips in an SQLite archive under ``root``."""
    settings = ArchiveSettings(data_dir=root / "data")
    clips: dict[str, PlantedClip] = {}
    files = root / "incoming"
    files.mkdir(parents=True)
    with Archive.open(settings) as archive:
        for index, (name, plan) in enumerate(_PLAN.items()):
            encoding, calibrated, reviews, birth, study_date = plan
            tag = name.upper()
            spec = ClipSpec(
                level=SpinalLevel.L4,
                frames=8,
                rows=200,
                cols=260,
                depth_mm=60.0,
                encoding=encoding,
                identity=_identity(tag, birth),
                descriptions=_descriptions(tag),
                study_date=study_date,
                study_key=name,
            )
            ds, truth = generate_clip(spec, seed=100 + index)
            _plant(ds, calibrated)
            path = files / f"{name}.dcm"
            dcmwrite(path, ds, enforce_file_format=True)
            result = archive.ingest(path, origin=Origin(kind="file", path=str(path)))
            assert result.outcome is IngestOutcome.STORED, result.reason
            for reviewer, status in reviews:
                archive.annotations.save(annotation_from_truth(truth, reviewer), base_version=None)
                if status is ReviewStatus.APPROVED:
                    uid = ds.SOPInstanceUID
                    archive.annotations.set_status(uid, reviewer, ReviewStatus.SUBMITTED, by=reviewer)
                    archive.annotations.set_status(uid, reviewer, ReviewStatus.APPROVED, by="chief")
            clips[name] = PlantedClip(
                name, spec.identity, spec.descriptions, study_date, ds, calibrated, dict(reviews)
            )
    return settings, clips


def run_cli(settings: ArchiveSettings, *args: str, secret: str | None = SECRET_HEX) -> Result:
    """``usarchive --data-dir ... --json <args>`` with the secret in the environment."""
    env = {"USARCHIVE_DEID_SECRET": secret or "", "USARCHIVE_DB": ""}
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "--json", *args], env=env)


def leaks(data: bytes, needles: list[bytes]) -> list[bytes]:
    """The needles found in ``data`` (also in UTF-16 and upper case)."""
    upper = data.upper()
    found = []
    for needle in needles:
        forms = (needle, needle.upper(), needle.decode("utf-8").encode("utf-16-le"))
        if any(form in data or form in upper for form in forms):
            found.append(needle)
    return found


def all_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under ``root`` (or ``root`` itself) with its bytes."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in paths:
        yield path, path.read_bytes()


def region_window(ds: Dataset) -> tuple[slice, slice]:
    """Rows and columns of the clip's (single) 2D region."""
    item = ds.SequenceOfUltrasoundRegions[0]
    rows = slice(int(item.RegionLocationMinY0), int(item.RegionLocationMaxY1) + 1)
    cols = slice(int(item.RegionLocationMinX0), int(item.RegionLocationMaxX1) + 1)
    return rows, cols


def outside_region(frames: npt.NDArray[np.generic], window: tuple[slice, slice]) -> npt.NDArray[np.generic]:
    """Pixels of ``frames`` (T, H, W[, 3]) outside the region window."""
    outside = np.ones(frames.shape[1:3], dtype=bool)
    outside[window] = False
    return frames[:, outside]


def banner_is_drawn(ds: Dataset) -> bool:
    """Whether the original clip really has burned-in text outside its region."""
    frames = ds.pixel_array
    return bool(outside_region(frames, region_window(ds)).any())


def dciodvfy(path: Path) -> tuple[str, list[str]]:
    """dciodvfy's output and its ``Error`` lines."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    return output, [line for line in output.splitlines() if line.startswith("Error")]
