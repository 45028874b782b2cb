"""contrib/: the systemd unit of ``usarchive serve`` is valid (``systemd-analyze verify``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "usarchive-serve.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_serve_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    usarchive = Path(sys.executable).with_name("usarchive")
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/usarchive/bin/usarchive serve" in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/usarchive/bin/usarchive", str(usarchive)), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # unknown keys and bad values are only warnings: refuse them too
    assert str(unit) not in output, output
