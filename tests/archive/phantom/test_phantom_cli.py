"""``usarchive sample``: one clip, a cohort, and clear errors for bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from click.testing import CliRunner

from archive.cli.main import main
from archive.phantom import GroundTruth


def test_generate_one_clip(tmp_path: Path) -> None:
    args = [
        "sample",
        "generate",
        str(tmp_path),
        "--seed",
        "9",
        "--frames",
        "8",
        "--rows",
        "200",
        "--cols",
        "260",
    ]
    result = CliRunner().invoke(
        main, [*args, "--level", "L5", "--needle-view", "out-of-plane", "--encoding", "jpeg-baseline"]
    )
    assert result.exit_code == 0, result.output
    paths = json.loads(result.output)
    ds = pydicom.dcmread(paths["dicom"])
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.NumberOfFrames == 8
    truth = GroundTruth.read(Path(paths["truth"]))
    assert (truth.level, truth.needle_view, truth.seed) == ("L5", "out-of-plane", 9)


def test_generate_cohort(tmp_path: Path) -> None:
    args = ["sample", "generate", str(tmp_path), "--cohort", "2", "--seed", "3", "--frames", "8"]
    result = CliRunner().invoke(main, [*args, "--rows", "160", "--cols", "200"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text("utf-8"))
    assert len(manifest["clips"]) >= 4 and (tmp_path / "outcomes.csv").exists()
    assert f"wrote {len(manifest['clips'])} clips of 2 patients" in result.output


def test_out_of_range_argument_is_reported(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sample", "generate", str(tmp_path), "--angle", "5"])
    assert result.exit_code != 0
    assert "needle_angle_deg: expected a value from 10 to 80, but got 5.0" in result.output
    assert not any(tmp_path.iterdir())
