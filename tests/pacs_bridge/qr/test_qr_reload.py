"""SIGHUP makes a running ``usarchive serve`` re-read its C-MOVE destinations and per-AE rights (real peers).

``movescu`` is the workstation, dcmtk ``storescp`` the destination; the
configuration file changes under the running process, and each step polls
until the peer sees the new table.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from bridge_helpers import start_serve_process, storescu, wait_for
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from qr_helpers import movescu, storescp, write_serve_config, write_study

pytestmark = pytest.mark.network

_RELOADED = "access control and C-MOVE destinations re-read"


def _unknown(result: subprocess.CompletedProcess[str]) -> bool:
    """dcmtk reports 0xA801 as "Refused: Move Destination unknown" (or "MoveDestinationUnknown")."""
    return "movedestinationunknown" in (result.stdout + result.stderr).lower().replace(" ", "")


def _moved(port: int, study_uid: str) -> bool:
    result = movescu(port, study_uid)
    return result.returncode == 0 and "E: " not in result.stdout + result.stderr and not _unknown(result)


def _refused_unknown(port: int, study_uid: str) -> bool:
    return _unknown(movescu(port, study_uid))


def _reloads(log: Path) -> int:
    return log.read_text().count(_RELOADED)


def test_sighup_rereads_move_destinations_and_rights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian] * 2)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    config = tmp_path / "usarchive.toml"
    log = tmp_path / "serve.log"
    with storescp(tmp_path / "out") as dest_port:
        write_serve_config(config, None)
        monkeypatch.setenv("USARCHIVE_CONFIG", str(config))
        process, port = start_serve_process(tmp_path / "data", [], log_path=log)
        try:
            assert storescu(port, files).returncode == 0
            assert _refused_unknown(port, study_uid)  # no destination table yet
            # DEST added: after SIGHUP the same movescu succeeds
            write_serve_config(config, dest_port)
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: _moved(port, study_uid), timeout_s=30, what="the move to the added DEST")
            assert len(list((tmp_path / "out").iterdir())) == 2
            # the calling AE's move destinations narrowed to another AE: DEST refused again (0xA801)
            write_serve_config(config, dest_port, move_to="OTHER")
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: _refused_unknown(port, study_uid), timeout_s=30, what="DEST not allowed for WS1")
            # a file that does not parse: logged, the running tables stay
            reloads = _reloads(log)
            config.write_text("[server\nallow = [")
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: "the running configuration stays" in log.read_text(), what="the refusal")
            assert _reloads(log) == reloads
            assert _refused_unknown(port, study_uid)
            # allowed again, then DEST removed: 0xA801
            write_serve_config(config, dest_port)
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: _moved(port, study_uid), timeout_s=30, what="DEST allowed again")
            write_serve_config(config, None)
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: _refused_unknown(port, study_uid), timeout_s=30, what="the removed DEST")
            # a table that would admit nobody is refused as at start; WS1 still moves... nowhere
            reloads = _reloads(log)
            config.write_text("[server]\nallow = []\n")
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: log.read_text().count("the running configuration stays") == 2, what="refusal")
            assert _reloads(log) == reloads
            assert _refused_unknown(port, study_uid)  # WS1 still admitted (the old table)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    text = log.read_text()
    assert "C-MOVE from WS1" in text and "status 0xA801" in text, text[-3000:]
