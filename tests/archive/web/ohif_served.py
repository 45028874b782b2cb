"""``usarchive web --ohif`` on a free loopback port with the sample clips, and Debian's Chromium for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from archive.archive import Archive
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from archive.web.ohif import with_viewer
from archive.web.ohif_install import ViewerSetupError, installed_dist
from archive.web.server import WebServer
from archive.web.settings import WebSettings

SAMPLES = Path(__file__).resolve().parents[3] / "sample_dicom"
CHROMIUM = Path("/usr/bin/chromium")


@dataclass
class ViewerServer:
    """A running server with the viewer: its origin, DICOMweb root, archive and tokens (role → secret)."""

    server: WebServer
    archive: Archive
    origin: str
    root: str
    tokens: dict[str, str]
    samples: dict[str, Path]

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root URL."""
        return self.origin + self.root


def viewer_dist() -> Path:
    """The verified OHIF dist/ (``make test`` installs it first); fails with the setup command if missing."""
    try:
        return installed_dist()
    except ViewerSetupError as exc:
        pytest.fail(str(exc))


@contextmanager
def viewer_server(
    directory: Path,
    *,
    audit_report: Path | None = None,
    dist: Path | None = None,
    prepare: Callable[[Archive], object] | None = None,
) -> Iterator[ViewerServer]:
    """An archive with the samples and a reader and a reviewer token, served with the viewer.

    ``dist`` defaults to the installed OHIF build; tests of our routes alone pass a stand-in.
    ``prepare`` runs on the archive before the server starts (e.g. to approve annotations).
    """
    archive = Archive.open(ArchiveSettings(directory / "data", f"sqlite:///{directory / 'index.sqlite'}"))
    samples = {}
    for path in sorted(SAMPLES.glob("*.dcm")):
        result = archive.ingest(path, origin=Origin(kind="file", path=str(path)))
        assert result.path is not None, result.reason
        samples[path.stem] = path
    tokens = {role: archive.tokens.create(role, role)[1] for role in ("reader", "reviewer")}
    if prepare is not None:
        prepare(archive)
    settings = WebSettings(port=0, access_log=directory / "access.log")
    files = dist or viewer_dist()
    server = WebServer(
        archive, settings, wrap=lambda app: with_viewer(app, settings, files, audit_report=audit_report)
    )
    server.start()
    try:
        yield ViewerServer(
            server, archive, server.url.removesuffix(settings.root), settings.root, tokens, samples
        )
    finally:
        server.stop()
        archive.close()


def approve_sample(archive: Archive, sample: str, reviewer: str) -> str:
    """Save the sample's ground truth as ``reviewer``'s annotation and approve it; the clip's UID."""
    from archive.model import ReviewStatus
    from archive.phantom import GroundTruth
    from archive.phantom.to_annotation import annotation_from_truth

    annotation = annotation_from_truth(GroundTruth.read(SAMPLES / f"{sample}.json"), reviewer)
    archive.annotations.save(annotation, base_version=None)
    uid = str(annotation.sop_instance_uid)
    archive.annotations.set_status(uid, reviewer, ReviewStatus.SUBMITTED, by=reviewer)
    archive.annotations.set_status(uid, reviewer, ReviewStatus.APPROVED, by="chief")
    return uid


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM}: not found; install Debian's chromium (`bash scripts/system-deps.sh`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def loopback_page(browser: Any, origin: str) -> Any:
    """A page that may reach ``origin`` only: every other request is aborted (no traffic off the machine)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(origin + "/") else route.abort(),
    )
    return page
