"""Helpers of the web tests: an archive with the sample clips and one token per role, served live."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import update

from archive.archive import Archive
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from archive.web.server import WebServer
from archive.web.settings import WebSettings
from archive.web.tokens.sql import web_token

SAMPLES = Path(__file__).resolve().parents[3] / "sample_dicom"


@dataclass
class Served:
    """A running server, its archive and tokens (name → secret)."""

    server: WebServer
    archive: Archive
    url: str
    tokens: dict[str, str]
    samples: dict[str, Path] = field(default_factory=dict)
    access_log: Path = Path()

    def sample(self, name: str) -> pydicom.Dataset:
        """The header of a sample clip (no pixels)."""
        return pydicom.dcmread(self.samples[name], stop_before_pixels=True)


def start_served(directory: Path, db_url: str, settings: WebSettings | None = None) -> Served:
    """Make an archive in ``directory`` with the samples and tokens, and serve it."""
    archive = Archive.open(ArchiveSettings(directory / "data", db_url))
    samples = {}
    for path in sorted(SAMPLES.glob("*.dcm")):
        result = archive.ingest(path, origin=Origin(kind="file", path=str(path)))
        assert result.path is not None, result.reason
        samples[path.stem] = path
    tokens = {}
    for role in ("reader", "reviewer", "admin"):
        _, tokens[role] = archive.tokens.create(role, role)
    _, tokens["revoked"] = archive.tokens.create("revoked", "admin")
    archive.tokens.revoke("revoked")
    _, tokens["expired"] = archive.tokens.create(
        "expired", "admin", expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    with archive.engine.begin() as connection:  # its day has passed
        connection.execute(
            update(web_token)
            .where(web_token.c.name == "expired")
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    log = directory / "access.log"
    settings = settings or WebSettings(port=0, access_log=log)
    server = WebServer(archive, settings)
    server.start()
    return Served(server, archive, server.url, tokens, samples, settings.access_log)


def client(served: Served, role: str = "reader") -> Any:
    """A dicomweb-client session with the role's token."""
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(served.url, headers={"Authorization": f"Bearer {served.tokens[role]}"})
