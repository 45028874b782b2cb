"""The worklist and MPPS tests run on SQLite and PostgreSQL (``db_url``), against the scanner's receiver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from worklist_peers import SCANNER

from archive.settings import ArchiveSettings
from pacs_bridge.config import BridgeSettings
from pacs_bridge.server import BridgeServer


@pytest.fixture
def archive_settings(tmp_path: Path, db_url: str) -> ArchiveSettings:
    return ArchiveSettings(data_dir=tmp_path / "data", db_url=db_url)


@pytest.fixture
def scanner_server(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings
) -> BridgeServer:
    """A receiver on which :data:`~worklist_peers.SCANNER` may store, query the worklist and send MPPS."""
    return start_bridge(bridge_settings, permissions=(SCANNER,))
