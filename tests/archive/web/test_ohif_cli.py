"""``usarchive web --ohif`` as a command: the viewer, app-config.js and landing page beside DICOMweb."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import requests
from click.testing import CliRunner

from archive.cli import main
from archive.config import ENV_CONFIG
from archive.settings import ENV_DB, ENV_HOME
from archive.web.ohif_install import CACHE_ENV

_ENV = {ENV_HOME: "", ENV_DB: "", ENV_CONFIG: ""}
SAMPLES = Path(__file__).resolve().parents[3] / "sample_dicom"


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={**_ENV, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def _archive(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert _cli("--data-dir", str(data), "init")[0] == 0
    code, _, err = _cli("--data-dir", str(data), "import", str(SAMPLES / "l4_tt_inplane_mono.dcm"))
    assert code == 0, err
    return data


def _wait_for(process: subprocess.Popen[str], marker: str, deadline_s: float = 60.0) -> str:
    assert process.stderr is not None
    end = time.monotonic() + deadline_s
    seen = []
    while time.monotonic() < end:
        ready, _, _ = select.select([process.stderr], [], [], max(end - time.monotonic(), 0))
        if not ready:
            break
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"usarchive web --ohif did not start: {''.join(seen)}")


def test_web_ohif_serves_viewer_landing_and_audit_link(tmp_path: Path) -> None:
    data = _archive(tmp_path)
    report = tmp_path / "audit.html"
    report.write_text("<html>audit</html>", encoding="utf-8")
    (data / "usarchive.toml").write_text(f'[web]\naudit_report = "{report}"\n', encoding="utf-8")
    _, secret, _ = _cli(
        "--data-dir", str(data), "web", "token", "create", "--name", "r", "--role", "reviewer"
    )
    env = {**os.environ, ENV_HOME: str(data), ENV_DB: "", ENV_CONFIG: ""}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("usarchive")), "web", "--port", "0", "--ohif"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the first line only: a later one may already sit in the pipe's text buffer, unseen by select
        line = _wait_for(process, "serving DICOMweb at ")
        origin = line.split("serving DICOMweb at ", 1)[1].strip().removesuffix("/dicomweb")
        assert origin.startswith("http://127.0.0.1:")
        assert "<title>usarchive" in requests.get(origin + "/", timeout=30).text
        assert "qidoSupportsIncludeField" in requests.get(origin + "/app-config.js", timeout=30).text
        assert requests.get(origin + "/ohif/viewer", timeout=30).text.startswith("<!doctype html>")
        auth = {"Authorization": f"Bearer {secret.strip()}"}
        overview = requests.get(origin + "/dicomweb/usarchive/overview", headers=auth, timeout=30).json()
        assert overview["audit_report"] is True and len(overview["studies"]) == 1
        audit = requests.get(origin + "/dicomweb/usarchive/audit-report", headers=auth, timeout=30)
        assert audit.text == "<html>audit</html>"
    finally:
        process.terminate()
        process.wait(30)


def test_web_ohif_without_the_setup_says_how_to_run_it(tmp_path: Path) -> None:
    data = _archive(tmp_path)
    code, _, err = _cli(
        "--data-dir", str(data), "web", "--port", "0", "--ohif", env={CACHE_ENV: str(tmp_path)}
    )
    assert code != 0
    assert "scripts/ohif-setup.sh" in err
