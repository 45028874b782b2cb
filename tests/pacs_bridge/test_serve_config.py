"""``usarchive serve`` takes its rules, duplicate policy and receiver tables from usarchive.toml."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from bridge_helpers import USARCHIVE, run, start_serve_process, storescu, write_clip
from pydicom import dcmread

from archive.archive import Archive
from archive.index.queries import Query
from archive.settings import ArchiveSettings

pytestmark = pytest.mark.network

SITE_RULES = """\
extends = "default"

[[rules.technique]]
name = "site-zweipunkt"
tokens = ["ZWEIPUNKT"]
value = "TT"

[[rules.side]]
name = "site-rechts"
tokens = ["RECHTS"]
value = "right"
"""


def test_a_site_rule_and_the_duplicate_policy_of_the_config_apply_to_received_clips(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run([USARCHIVE, "--data-dir", str(data_dir), "init"]).returncode == 0
    (data_dir / "site.toml").write_text(SITE_RULES, encoding="utf-8")
    (data_dir / "usarchive.toml").write_text(
        '[archive]\nrules = "site.toml"\nduplicate_policy = "replace"\n\n[server]\nallow = ["SCANNER"]\n',
        encoding="utf-8",
    )
    first = write_clip(tmp_path / "first.dcm", description="L4 ZWEIPUNKT RECHTS", seed=1)
    uid = str(dcmread(first, stop_before_pixels=True).SOPInstanceUID)
    second = write_clip(
        tmp_path / "second.dcm", description="L4 ZWEIPUNKT RECHTS", seed=2, sop_instance_uid=uid
    )
    process, port = start_serve_process(data_dir, [])  # the allow-list comes from [server] too
    try:
        assert storescu(port, [first]).returncode == 0
        assert storescu(port, [second]).returncode == 0  # keep-first would refuse it (conflict)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    with Archive.open(ArchiveSettings(data_dir), create=False) as archive:
        (row,) = archive.index.find(Query())
        history = archive.index.show(uid)
    assert (row.technique, row.side, row.levels) == ("TT", "right", ("L4",))
    assert "replaced" in str(history).lower()


def test_a_bad_server_key_in_the_config_names_the_file_and_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run([USARCHIVE, "--data-dir", str(data_dir), "init"]).returncode == 0
    config = data_dir / "usarchive.toml"
    config.write_text('[server]\nallow = ["SCANNER"]\nport = "eleven"\n', encoding="utf-8")
    result = run([USARCHIVE, "--data-dir", str(data_dir), "serve"])
    assert result.returncode == 1
    assert f"{config}:3: [server] port: expected int" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_former_serve_config_file_still_works_with_a_deprecation_warning(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    bridge = tmp_path / "bridge.toml"
    bridge.write_text('[server]\nallow = ["SCANNER"]\n', encoding="utf-8")
    log = tmp_path / "serve.log"
    process, port = start_serve_process(data_dir, ["--config", str(bridge)], log_path=log)
    try:
        assert storescu(port, [write_clip(tmp_path / "a.dcm")]).returncode == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert "deprecated" in log.read_text() and "usarchive.toml" in log.read_text()
