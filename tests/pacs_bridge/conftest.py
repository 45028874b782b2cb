"""Fixtures of the PACS bridge tests: an archive in ``tmp_path`` and a running receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from bridge_helpers import CLIP_SYNTAXES, write_clip

from archive.archive import Archive
from archive.settings import ArchiveSettings
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer
from pacs_bridge.server import BridgeServer


@pytest.fixture
def archive_settings(tmp_path: Path) -> ArchiveSettings:
    return ArchiveSettings(data_dir=tmp_path / "data")


@pytest.fixture
def archive(archive_settings: ArchiveSettings) -> Iterator[Archive]:
    with Archive.open(archive_settings) as opened:
        yield opened


@pytest.fixture
def bridge_settings() -> BridgeSettings:
    """Loopback, a free port, only the calling AE title ``SCANNER`` allowed."""
    return BridgeSettings(host="127.0.0.1", port=0, allow=(AllowedPeer("SCANNER"),), dimse_timeout_s=20.0)


@pytest.fixture
def start_bridge(archive: Archive) -> Iterator[Callable[..., BridgeServer]]:
    """Start receivers on ``archive`` (settings overridable); all are stopped after the test."""
    servers: list[BridgeServer] = []

    def start(settings: BridgeSettings, **overrides: object) -> BridgeServer:
        server = BridgeServer(replace(settings, **overrides), archive)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(drain_timeout_s=5.0)


@pytest.fixture
def bridge(start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings) -> BridgeServer:
    return start_bridge(bridge_settings)


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    """One small clip per transfer syntax the receiver must accept as is."""
    out = tmp_path / "clips"
    out.mkdir()
    return [
        write_clip(out / f"clip{i}.dcm", transfer_syntax=ts, seed=i, description=desc)
        for i, (ts, desc) in enumerate(
            zip(
                CLIP_SYNTAXES,
                [
                    "L5 left OT",
                    "L4 right TT",
                    "L3 left OT",
                    "L5 right TT",
                    "L4 left OT",
                    "L5 left TT",
                    "L3 right OT",
                ],
                strict=True,
            )
        )
    ]
