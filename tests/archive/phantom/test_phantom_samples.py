"""The committed sample_dicom/ set: valid, decodable, covering, and reproducible from its seeds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import PIL
import PIL.features
import pydicom
import pytest
from pydicom.pixels import iter_pixels
from pydicom.uid import JPEGBaseline8Bit

from archive.phantom import GroundTruth
from archive.phantom.samples import SAMPLES, Sample, write_samples

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "sample_dicom"
#: The environment in which the committed JPEG streams were made (see sample_dicom/README.md).
PINNED_JPEG = ("13.0.0", "3.2.0")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    write_samples(out)
    return out


def test_sample_set_is_complete_and_small() -> None:
    names = sorted(p.name for p in SAMPLE_DIR.iterdir())
    expected = sorted(
        [f"{s.stem}.dcm" for s in SAMPLES] + [f"{s.stem}.json" for s in SAMPLES] + ["README.md"]
    )
    assert names == expected
    assert sum(p.stat().st_size for p in SAMPLE_DIR.iterdir()) <= 15_000_000
    readme = (SAMPLE_DIR / "README.md").read_text("utf-8")
    for sample in SAMPLES:
        assert f"`{sample.stem}.dcm`" in readme and f"| {sample.seed} |" in readme


def test_sample_set_covers_the_required_cases() -> None:
    specs = [s.spec for s in SAMPLES]
    assert {s.level.value for s in specs} >= {"L3", "L4", "L5", "C4"}
    assert any(
        s.level.value == "L5" and s.technique.value == "TT" and s.needle_view.value == "out-of-plane"
        for s in specs
    )
    assert any(
        s.level.value == "L5" and s.technique.value == "OT" and s.needle_view.value == "in-plane"
        for s in specs
    )
    assert any(s.level.value == "C4" and s.danger for s in specs)
    assert {s.encoding.value for s in specs} == {"explicit-mono", "explicit-rgb", "jpeg-baseline"}
    assert any(s.frames == 1 for s in specs)
    assert any(s.descriptions.character_set == "ISO_IR 192" for s in specs)


@pytest.mark.parametrize("stem", [s.stem for s in SAMPLES])
def test_sample_passes_dciodvfy_without_errors_or_warnings(stem: str) -> None:
    result = subprocess.run(
        ["dciodvfy", str(SAMPLE_DIR / f"{stem}.dcm")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith("US") for line in lines), lines
    assert [line for line in lines if line.startswith(("Error", "Warning"))] == []


@pytest.mark.parametrize("stem", [s.stem for s in SAMPLES])
def test_sample_decodes_and_matches_its_truth(stem: str) -> None:
    path = SAMPLE_DIR / f"{stem}.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    truth = GroundTruth.read(SAMPLE_DIR / f"{stem}.json")
    frames = sum(1 for _ in iter_pixels(path))
    assert frames == int(ds.get("NumberOfFrames", 1)) == truth.spread.shape[0]
    assert ds.SOPInstanceUID == truth.sop_instance_uid
    assert truth.spread.shape[1:] == (ds.Rows, ds.Columns)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_sample_regenerates_from_its_seed(regenerated: Path, sample: Sample) -> None:
    stem = sample.stem
    assert (regenerated / f"{stem}.json").read_bytes() == (SAMPLE_DIR / f"{stem}.json").read_bytes()
    new = (regenerated / f"{stem}.dcm").read_bytes()
    old = (SAMPLE_DIR / f"{stem}.dcm").read_bytes()
    ds_old = pydicom.dcmread(SAMPLE_DIR / f"{stem}.dcm")
    if ds_old.file_meta.TransferSyntaxUID != JPEGBaseline8Bit:
        assert new == old
        return
    if (PIL.__version__, PIL.features.version("libjpeg_turbo")) == PINNED_JPEG:
        assert new == old
    ds_new = pydicom.dcmread(regenerated / f"{stem}.dcm")
    skip = {"PixelData", "LossyImageCompressionRatio"}
    assert [e for e in ds_new if e.keyword not in skip] == [e for e in ds_old if e.keyword not in skip]
    for a, b in zip(
        iter_pixels(regenerated / f"{stem}.dcm"), iter_pixels(SAMPLE_DIR / f"{stem}.dcm"), strict=True
    ):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 6


def test_readme_regenerates(regenerated: Path) -> None:
    assert (regenerated / "README.md").read_text("utf-8") == (SAMPLE_DIR / "README.md").read_text("utf-8")
