"""``usarchive serve`` answers C-MOVE (to a ``[destinations.NAME]``) and C-GET, one log line per retrieve."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from bridge_helpers import dataset_bytes, start_serve_process, storescu, wait_for
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from qr_helpers import getscu, movescu, storescp, write_serve_config, write_study

pytestmark = pytest.mark.network


def test_serve_moves_and_gets_and_logs_one_line_per_retrieve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian] * 2)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    log = tmp_path / "serve.log"
    with storescp(tmp_path / "out") as dest_port:
        config = tmp_path / "usarchive.toml"
        write_serve_config(config, dest_port, rights=["move", "get"], move_to="DEST")
        monkeypatch.setenv("USARCHIVE_CONFIG", str(config))
        process, port = start_serve_process(tmp_path / "data", [], log_path=log)
        try:
            assert storescu(port, files).returncode == 0
            moved = movescu(port, study_uid, verbose=False)
            assert moved.returncode == 0, moved.stderr
            out = tmp_path / "got"
            out.mkdir()
            got = getscu(port, study_uid, out, verbose=False)
            assert got.returncode == 0, got.stderr
            wait_for(lambda: "C-GET from WS1" in log.read_text(), what="the C-GET log line")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        received = sorted((tmp_path / "out").iterdir())
    originals = {str(dcmread(p).SOPInstanceUID): dataset_bytes(p) for p in files}
    for directory in (tmp_path / "out", tmp_path / "got"):
        got_files = {str(dcmread(p).SOPInstanceUID): dataset_bytes(p) for p in directory.iterdir()}
        assert got_files == originals, directory
    assert len(received) == 2
    text = log.read_text()
    moves = re.findall(r"C-MOVE from WS1@127\.0\.0\.1:\d+ to DEST: (.*), status 0x0000, \d+ ms", text)
    gets = re.findall(r"C-GET from WS1@127\.0\.0\.1:\d+: (.*), status 0x0000, \d+ ms", text)
    assert moves == ["completed 2, failed 0, warning 0, remaining 0"], text
    assert gets == ["completed 2, failed 0, warning 0, remaining 0"], text
