"""Fixtures of the PACS bridge tests: an archive in ``tmp_path`` and a running receiver."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from bridge_helpers import CLIP_SYNTAXES, write_clip

from archive.archive import Archive
from archive.forward.config import Destination
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
    """Start receivers on ``archive`` (settings overridable, C-MOVE destinations); all stop after the test."""
    servers: list[BridgeServer] = []

    def start(
        settings: BridgeSettings, *, destinations: Iterable[Destination] = (), **overrides: object
    ) -> BridgeServer:
        by_name = {destination.name: destination for destination in destinations}
        server = BridgeServer(replace(settings, **overrides), archive, destinations=by_name)
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


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM."""
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=usarchive test CA", cwd=d)  # fmt: skip
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        (d / f"{name}.ext").write_text(extension + "\n" if extension else "basicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    return d


@pytest.fixture
def self_signed_certificate(certificates: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (not from the test CA) and its key, PEM."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.crt",
             "-days", "2", "-subj", "/CN=rogue", "-addext", "subjectAltName=IP:127.0.0.1",
             cwd=certificates)  # fmt: skip
    return certificates / "rogue.crt", certificates / "rogue.key"
