"""Forwarding over TLS: the ``[tls]`` certificate is presented to the destination and its CA trusted.

The destination is a second ``usarchive`` receiver serving TLS that requires
a client certificate signed by the test CA (DICOM TLS is usually mutual).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bridge_helpers import write_clip
from forward_helpers import sop_uid

from archive.archive import Archive
from archive.forward.config import Destination, ForwardSettings, Route
from archive.forward.model import TaskStatus
from archive.index.queries import Query
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from pacs_bridge.config import BridgeSettings, TLSSettings
from pacs_bridge.forward import Forwarder
from pacs_bridge.server import BridgeServer


def _sender(tmp_path: Path, port: int) -> ArchiveSettings:
    destination = Destination(
        name="PACS", ae_title="USARCHIVE", host="127.0.0.1", port=port, calling_ae="SCANNER", tls=True
    )
    forward = ForwardSettings(
        poll_s=0.05,
        destinations={"PACS": destination},
        routes=(Route(destination="PACS", granularity="instance"),),
    )
    return ArchiveSettings(data_dir=tmp_path / "sender", forward=forward)


def _forward_once(tmp_path: Path, port: int, tls: TLSSettings | None) -> tuple[Path, TaskStatus, str]:
    clip = write_clip(tmp_path / f"clip-{tls is not None}.dcm", frames=2, seed=7 if tls else 8)
    settings = _sender(tmp_path, port)
    with Archive.open(settings) as sender:
        sender.ingest(clip, origin=Origin("file", path=str(clip)))
        Forwarder(sender, settings.forward, "tls-test", tls=tls).run_once()
        (task,) = sender.forward.list(limit=None)
    return clip, task.status, task.last_comment


def test_forwarding_presents_the_tls_certificate_and_trusts_the_tls_ca(
    certificates: Path,
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    archive: Archive,
    tmp_path: Path,
) -> None:
    d = certificates
    served = TLSSettings(d / "server.crt", d / "server.key", d / "ca.crt")
    receiver = start_bridge(bridge_settings, tls=served)
    ours = TLSSettings(d / "client.crt", d / "client.key", d / "ca.crt")
    clip, status, comment = _forward_once(tmp_path, receiver.port, ours)
    assert status is TaskStatus.COMPLETED, comment
    [row] = archive.index.find(Query())
    assert row.sop_instance_uid == sop_uid(clip)


def test_without_the_tls_section_a_private_ca_destination_fails_retryably(
    caplog: pytest.LogCaptureFixture,
    certificates: Path,
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    archive: Archive,
    tmp_path: Path,
) -> None:
    d = certificates
    served = TLSSettings(d / "server.crt", d / "server.key", d / "ca.crt")
    receiver = start_bridge(bridge_settings, tls=served)
    _, status, comment = _forward_once(tmp_path, receiver.port, None)
    assert status is TaskStatus.SCHEDULED  # a network failure: retried after the backoff
    assert "association not established" in comment
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text  # pynetdicom logs why the handshake failed
    assert archive.index.find(Query()) == []
