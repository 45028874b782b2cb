"""The capture demo (``make run``): dcmtk storescu into ``usarchive serve``, then the index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bridge_helpers import write_clip
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

from pacs_bridge.demo import group_by_proposal


def test_group_by_proposal_sends_each_syntax_untranscoded(tmp_path: Path) -> None:
    files = [
        write_clip(tmp_path / "le.dcm", transfer_syntax=ExplicitVRLittleEndian),
        write_clip(tmp_path / "be.dcm", transfer_syntax=ExplicitVRBigEndian),
        write_clip(tmp_path / "jpeg.dcm", transfer_syntax=JPEGBaseline8Bit),
        write_clip(tmp_path / "rle.dcm", transfer_syntax=RLELossless),
    ]
    (tmp_path / "notes.txt").write_text("not DICOM")
    groups = group_by_proposal([*files, tmp_path / "notes.txt"])
    assert groups == {"-x=": [files[0]], "-xb": [files[1]], "-xy": [files[2]], "-xr": [files[3]]}


@pytest.mark.network
@pytest.mark.slow
def test_demo_captures_samples_and_prints_the_index(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    write_clip(samples / "a.dcm", description="L4 left OT", seed=1)
    write_clip(samples / "b.dcm", description="L5 right TT", seed=2, transfer_syntax=JPEGBaseline8Bit)
    result = subprocess.run(
        [sys.executable, "-m", "pacs_bridge.demo", str(samples), "--data-dir", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "storescu sent 2 files" in result.stdout
    assert "2 instance(s)" in result.stdout
    assert "OT" in result.stdout and "TT" in result.stdout


@pytest.mark.network
@pytest.mark.slow
def test_demo_without_dcmtk_sends_with_pynetdicom(tmp_path: Path) -> None:
    """``make run`` on a machine without dcmtk still shows the network capture (never an import)."""
    samples = tmp_path / "samples"
    samples.mkdir()
    write_clip(samples / "a.dcm", description="L4 left OT", seed=1)
    write_clip(samples / "b.dcm", description="L5 right TT", seed=2, transfer_syntax=JPEGBaseline8Bit)
    empty_path = tmp_path / "bin"
    empty_path.mkdir()  # no echoscu, no storescu on PATH
    result = subprocess.run(
        [sys.executable, "-m", "pacs_bridge.demo", str(samples), "--data-dir", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PATH": str(empty_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pynetdicom (dcmtk is not installed) sent 2 files" in result.stdout
    assert "2 instance(s)" in result.stdout
