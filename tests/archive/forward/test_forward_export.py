"""``export --format sr --send-to NAME`` queues the reports in the forwarding outbox for that destination."""

from __future__ import annotations

import json
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ComprehensiveSRStorage

from archive.archive import Archive
from archive.config import load_configuration
from archive.forward.model import TaskStatus
from tests.archive.research.export.export_cases import build_archive, run_cli

DESTINATIONS = """\
[destinations.PACS]
ae_title = "PACS"
host = "127.0.0.1"
port = 4242
"""


def test_reports_are_queued_for_a_named_destination(tmp_path: Path) -> None:
    settings, _ = build_archive(tmp_path)
    (settings.data_dir / "usarchive.toml").write_text(DESTINATIONS, encoding="utf-8")
    refused = run_cli(settings, "export", "--format", "sr", str(tmp_path / "none"), "--send-to", "NOPE")
    assert refused.exit_code == 1 and "destination 'NOPE'" in refused.output
    assert not (tmp_path / "none").exists()
    out = tmp_path / "reports"
    result = run_cli(settings, "export", "--format", "sr", str(out), "--status", "any", "--send-to", "PACS")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["written"], summary["queued"], summary["sent"]) == (3, 3, 0)
    written = {str(dcmread(p).SOPInstanceUID) for p in out.glob("*.dcm")}
    with Archive.open(load_configuration(data_dir=settings.data_dir, environ={}).archive) as archive:
        tasks = archive.forward.list()
    assert {t.sop_instance_uid for t in tasks} == written
    assert {(t.destination, t.status, t.sop_class_uid, t.route) for t in tasks} == {
        ("PACS", TaskStatus.SCHEDULED, ComprehensiveSRStorage, None)
    }
    for task in tasks:  # kept in the outbox, byte-identical to the exported report
        assert task.path.parent == settings.data_dir / "outbox"
        assert task.path.read_bytes() == (out / f"{task.sop_instance_uid}.dcm").read_bytes()
    assert "PACS (queued in the forwarding outbox)" in (out / "export-card.md").read_text(encoding="utf-8")
