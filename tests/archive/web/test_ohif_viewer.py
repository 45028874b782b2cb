"""OHIF (pinned @ohif/app dist/) in Debian's headless Chromium against a live ``usarchive web --ohif``.

Driven by Playwright for Python with ``executable_path=/usr/bin/chromium``; every
request off the server's loopback origin is aborted. Readiness is polled with
Playwright's waits (selectors, overlay text, a JS predicate), never slept on.
Screenshots go to docs/images/ (shown in README.md and docs/ohif.md) when
``USARCHIVE_DOC_IMAGES=1`` is set, else to a temporary directory.

The length check is independent of OHIF: the two end points of the drawn line,
in image pixel coordinates as cornerstone reports them, are measured by
:meth:`archive.calibration.Calibration.distance_mm` from the clip's own US
regions, and OHIF's reading must agree. OHIF (cornerstone3D) labels a length
calibrated by US regions in the regions' physical unit (cm, PS3.3 C.8.5.5.1.15
code 3) as "cm US Region"; the test converts to mm.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from archive.calibration import Calibration

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ohif_served import ViewerServer, approve_sample, chromium, loopback_page, viewer_server  # noqa: E402

pytestmark = pytest.mark.slow

#: Set to write the screenshots into docs/images/ (to refresh the documentation); else a temporary directory.
DOC_IMAGES_ENV = "USARCHIVE_DOC_IMAGES"
IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"
#: Playwright's waits (ms): the first load compiles OHIF's bundles and codecs.
LOAD_MS = 90_000
STEP_MS = 20_000
#: The clip whose approved annotation is published as SR.
SR_SAMPLE = "l3_tt_inplane_jpeg"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    # one approved annotation: --ohif publishes it as SR in the clip's study
    with viewer_server(
        tmp_path_factory.mktemp("ohif"), prepare=lambda archive: approve_sample(archive, SR_SAMPLE, "rev.a")
    ) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return IMAGES if os.environ.get(DOC_IMAGES_ENV) else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


def _headers(served: ViewerServer) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in served.samples.values()]


def _ohif_name(name: object) -> str:
    """How OHIF's study list writes a Person Name: ``FAMILY, GIVEN``."""
    family, _, given = str(name).partition("^")
    return f"{family}, {given}" if given else family


def _with_token(page: Any, served: ViewerServer, role: str = "reader") -> None:
    """Put the token where the landing page puts it (the tab's sessionStorage)."""
    page.goto(served.origin + "/")
    store = "([key, value]) => window.sessionStorage.setItem(key, value)"
    page.evaluate(store, ["usarchive.token", served.tokens[role]])


def _skip_tour(page: Any) -> None:
    skip = page.get_by_text("Skip all")
    if skip.count():
        skip.first.click()


def test_landing_page_lists_every_sample_clip_with_its_procedure_keys(
    served: ViewerServer, browser: Any, shots: Path
) -> None:
    page = loopback_page(browser, served.origin)
    page.goto(served.origin + "/")
    page.fill("#token", served.tokens["reviewer"])
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("tr.clip", timeout=LOAD_MS)
    rows = page.locator("tr.clip")
    assert rows.count() == len(served.samples)
    expected = {
        (row.study_instance_uid, ", ".join(row.levels), row.side, row.technique, row.approach)
        for row in served.archive.index.find(_all())
        if row.modality != "SR"
    }
    shown = set()
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        shown.add((rows.nth(i).get_attribute("data-study"), cells[2], cells[3], cells[4], cells[5]))
        approved = rows.nth(i).get_attribute("data-sop") == _sr_clip(served)
        assert cells[7] == ("rev.a: approved" if approved else "not reviewed")  # reviewer token: status
    assert shown == {(s, lv, side, t, a) for s, lv, side, t, a in expected}
    link = rows.first.locator("a.open")
    assert link.get_attribute("href").startswith("/ohif/viewer?StudyInstanceUIDs=")
    page.screenshot(path=str(shots / "ohif-landing.png"))
    page.close()


def test_landing_page_asks_again_for_a_refused_token(served: ViewerServer, browser: Any) -> None:
    page = loopback_page(browser, served.origin)
    page.goto(served.origin + "/")
    page.fill("#token", "usa_not-a-token")
    page.click("#token-form button[type=submit]")
    page.locator("#status", has_text="refused").wait_for(timeout=LOAD_MS)
    assert page.locator("tr.clip").count() == 0
    assert page.evaluate("window.sessionStorage.getItem('usarchive.token')") is None
    page.close()


def test_ohif_study_list_shows_the_samples(served: ViewerServer, browser: Any, shots: Path) -> None:
    page = loopback_page(browser, served.origin)
    _with_token(page, served)
    page.goto(served.origin + "/ohif/")
    names = sorted({_ohif_name(ds.PatientName) for ds in _headers(served)})
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for(timeout=LOAD_MS)
    accessions = {str(ds.AccessionNumber) for ds in _headers(served)}
    for accession in accessions:
        assert page.get_by_text(accession, exact=True).count() == 1
    page.screenshot(path=str(shots / "ohif-study-list.png"))
    page.close()


@pytest.mark.parametrize(
    "sample", ["l3_tt_inplane_jpeg", "c45_danger_mono"], ids=["jpeg-baseline", "uncompressed"]
)
def test_clip_opens_steps_frames_and_the_length_tool_reads_calibrated_mm(
    served: ViewerServer, browser: Any, shots: Path, sample: str
) -> None:
    header = pydicom.dcmread(served.samples[sample], stop_before_pixels=True)
    frames = int(header.NumberOfFrames)
    page = loopback_page(browser, served.origin)
    _with_token(page, served)
    page.goto(
        f"{served.origin}/ohif/viewer?StudyInstanceUIDs={header.StudyInstanceUID}"
        f"&SeriesInstanceUIDs={header.SeriesInstanceUID}"
    )
    overlay = page.locator("[data-cy=viewport-overlay-bottom-right]").first
    page.locator("canvas.cornerstone-canvas").first.wait_for(timeout=LOAD_MS)
    overlay.filter(has_text=f"(1/{frames})").wait_for(timeout=LOAD_MS)
    _skip_tour(page)
    shown = page.evaluate("() => window.cornerstone.getEnabledElements()[0].viewport.getCurrentImageId()")
    assert f"/instances/{header.SOPInstanceUID}/frames/1" in shown

    pane = page.locator("[data-cy=viewport-pane]").first.bounding_box()
    centre = (pane["x"] + pane["width"] / 2, pane["y"] + pane["height"] / 2)
    page.mouse.move(*centre)
    page.mouse.wheel(0, 120)
    overlay.filter(has_text=f"(2/{frames})").wait_for(timeout=STEP_MS)
    page.keyboard.press("ArrowDown")
    overlay.filter(has_text=f"(3/{frames})").wait_for(timeout=STEP_MS)

    page.locator("[data-cy=Length]").first.click()
    start = (pane["x"] + pane["width"] * 0.42, pane["y"] + pane["height"] * 0.45)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 140, start[1] + 90, steps=12)
    page.mouse.up()
    page.wait_for_function(_LENGTH_READY, timeout=STEP_MS)
    reading = page.evaluate(_LENGTH_READING)
    assert reading["unit"] == "cm US Region", reading
    (x0, y0), (x1, y1) = reading["points"]
    ours = Calibration.from_dataset(header).distance_mm((y0, x0), (y1, x1))
    assert ours > 5.0  # a line of real length, not a click
    assert reading["length"] * 10.0 == pytest.approx(ours, abs=0.01)
    # the label drawn on the image says the same (2 decimals in cm), once the SVG layer has caught up
    page.locator("svg text", has_text=f"{ours / 10.0:.2f} cm US Region").first.wait_for(timeout=STEP_MS)
    track = page.get_by_role("button", name="Yes", exact=True)
    if track.count():  # OHIF offers to track the measurement: accept, so the panel lists it
        track.first.click()
    page.screenshot(path=str(shots / f"ohif-length-{sample}.png"))
    page.close()


def test_ohif_reads_the_published_sr_measurements(served: ViewerServer, browser: Any) -> None:
    header = pydicom.dcmread(served.samples[SR_SAMPLE], stop_before_pixels=True)
    page = loopback_page(browser, served.origin)
    _with_token(page, served)
    page.goto(f"{served.origin}/ohif/viewer?StudyInstanceUIDs={header.StudyInstanceUID}")
    page.wait_for_function(_SR_PRESENT, timeout=LOAD_MS)
    measurements = page.evaluate(_SR_MEASUREMENTS)
    # OHIF's dicom-sr handler reads what our builder wrote (values and units of TID 300 NUM items)
    sr = _published_sr(served, str(header.SOPInstanceUID))
    ours = sorted(
        f"{float(v.NumericValue):.2f} {v.MeasurementUnitsCodeSequence[0].CodeValue}"
        for item in sr.iterall()
        if item.keyword == "MeasuredValueSequence"
        for v in item.value
    )
    assert sorted(m["value"] for m in measurements) == ours
    assert {m["label"] for m in measurements} == {"Length", "Area", "Angle"}
    assert any(m["value"].endswith(" mm") for m in measurements)
    page.close()


def _sr_clip(served: ViewerServer) -> str:
    return str(pydicom.dcmread(served.samples[SR_SAMPLE], stop_before_pixels=True).SOPInstanceUID)


def _published_sr(served: ViewerServer, clip: str) -> pydicom.Dataset:
    from archive.model import ReviewStatus
    from archive.web.reports import report_uids

    (review,) = served.archive.annotations.list_reviews(status=ReviewStatus.APPROVED)
    _, instance = report_uids(clip, "rev.a", review.latest_version)
    rows = [r for r in served.archive.index.find(_all()) if r.sop_instance_uid == instance]
    assert len(rows) == 1, "the approved annotation was not published as SR"
    return pydicom.dcmread(served.archive.store.absolute(rows[0].path))


_SR_PRESENT = """() => !!(window.services && window.services.displaySetService
  .getActiveDisplaySets().some((d) => d.Modality === 'SR'))"""

_SR_MEASUREMENTS = """async () => {
  const sr = window.services.displaySetService.getActiveDisplaySets().find((d) => d.Modality === 'SR');
  await sr.load({ headers: window.services.userAuthenticationService.getAuthorizationHeader() });
  return sr.measurements.flatMap((m) => m.labels);
}"""


def _all() -> Any:
    from archive.index.queries import Query

    return Query(limit=1000)


_LENGTH_READY = """() => {
  const state = window.cornerstoneTools && window.cornerstoneTools.annotation.state;
  if (!state) { return false; }
  const length = state.getAllAnnotations().find((a) => a.metadata.toolName === 'Length');
  // drawn, released, and its statistics recomputed from the final handles (cornerstone clears
  // `invalidated` when it recomputes them on render)
  return !!length && length.invalidated === false
    && Object.values(length.data.cachedStats || {}).some((s) => typeof s.length === 'number');
}"""

_LENGTH_READING = """() => {
  const viewport = window.cornerstone.getEnabledElements()[0].viewport;
  const imageId = viewport.getCurrentImageId();
  const length = window.cornerstoneTools.annotation.state.getAllAnnotations()
    .find((a) => a.metadata.toolName === 'Length');
  const stats = Object.values(length.data.cachedStats).find((s) => typeof s.length === 'number');
  return {
    length: stats.length,
    unit: stats.unit,
    points: length.data.handles.points
      .map((p) => window.cornerstone.utilities.worldToImageCoords(imageId, p)),
  };
}"""
