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
code 3) as "cm US Region"; that is correct (it is the unit the scanner
calibrated in) and OHIF 3.13 has no setting for mm here, so the test checks
the unit against the clip's regions and converts to mm.

Approved annotations are published as SR; the study browser lists the SR
series and opening it draws each measurement group on the clip's frame it
references, at the SCOORD points of the document.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
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
#: Physical Units X/Y Direction codes (PS3.3 C.8.5.5.1.15) of spatial US regions, as cornerstone3D
#: names them, and millimetres per unit. Scanners write 3 (cm) for B-mode regions.
_REGION_UNITS = {3: "cm"}
_MM_PER = {"cm": 10.0}


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
    # OHIF states the length in the unit of the clip's US regions (their Physical Units code), not mm
    (unit,) = {_REGION_UNITS[int(r.PhysicalUnitsXDirection)] for r in header.SequenceOfUltrasoundRegions}
    assert reading["unit"] == f"{unit} US Region", reading
    (x0, y0), (x1, y1) = reading["points"]
    ours = Calibration.from_dataset(header).distance_mm((y0, x0), (y1, x1))
    assert ours > 5.0  # a line of real length, not a click
    assert reading["length"] * _MM_PER[unit] == pytest.approx(ours, abs=0.01)
    # the label drawn on the image says the same (2 decimals), once the SVG layer has caught up
    label = f"{ours / _MM_PER[unit]:.2f} {unit} US Region"
    page.locator("svg text", has_text=label).first.wait_for(timeout=STEP_MS)
    track = page.get_by_role("button", name="Yes", exact=True)
    if track.count():  # OHIF offers to track the measurement: accept, so the panel lists it
        track.first.click()
    page.screenshot(path=str(shots / f"ohif-length-{sample}.png"))
    page.close()


def test_the_study_browser_lists_the_sr_and_opening_it_draws_the_measurements_on_their_frames(
    served: ViewerServer, browser: Any, shots: Path
) -> None:
    header = pydicom.dcmread(served.samples[SR_SAMPLE], stop_before_pixels=True)
    sr = _published_sr(served, str(header.SOPInstanceUID))
    groups = _sr_groups(sr)
    page = loopback_page(browser, served.origin)
    _with_token(page, served)
    page.goto(f"{served.origin}/ohif/viewer?StudyInstanceUIDs={header.StudyInstanceUID}")
    page.locator("canvas.cornerstone-canvas").first.wait_for(timeout=LOAD_MS)
    _skip_tour(page)
    # the SR series is an entry of the study browser (OHIF lists SR without a thumbnail image)
    entry = page.get_by_text(str(sr.SeriesDescription), exact=True).first
    entry.wait_for(timeout=LOAD_MS)
    entry.dblclick()
    page.wait_for_function(_SR_DRAWN, arg=len(groups), timeout=LOAD_MS)
    drawn = page.evaluate(_SR_DRAWN_MEASUREMENTS)
    # every measurement group is drawn on the clip's frame it references, at its SCOORD points
    assert len(drawn) == len(groups)
    by_label = {d["label"]: d for d in drawn}
    assert sorted(by_label) == sorted(g["label"] for g in groups)
    for group in groups:
        shown = by_label[group["label"]]
        assert f"/instances/{header.SOPInstanceUID}/frames/{group['frame']}" in shown["imageId"]
        np.testing.assert_allclose(np.array(shown["points"]), group["points"], atol=1e-3)
    # the viewer opened the clip at the first measurement's frame, and the SVG layer shows the values
    first = min(group["frame"] for group in groups)
    frames = int(header.NumberOfFrames)
    overlay = page.locator("[data-cy=viewport-overlay-bottom-right]").first
    overlay.filter(has_text=f"({first}/{frames})").wait_for(timeout=STEP_MS)
    for group in groups:
        if group["frame"] == first:
            page.locator("svg text", has_text=group["label"]).first.wait_for(timeout=STEP_MS)
    page.screenshot(path=str(shots / "ohif-sr-measurements.png"))
    page.close()


def _sr_groups(sr: pydicom.Dataset) -> list[dict[str, Any]]:
    """Each measurement group of our report: OHIF's label ("5.32 mm"), 1-based frame, SCOORD (x, y) points."""
    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    content = report.content
    assert isinstance(content, hd.sr.MeasurementReport)
    groups = []
    for group in content.get_planar_roi_measurement_groups():
        (measurement,) = group.get_measurements()
        region = group.roi
        assert region is not None
        groups.append(
            {
                "label": f"{measurement.value:.2f} {measurement.unit.value}",
                "frame": int(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber),
                "points": np.asarray(region.value, dtype=np.float64).reshape(-1, 2),
            }
        )
    return groups


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


_SR_DRAWN = """(count) => {
  const state = window.cornerstoneTools && window.cornerstoneTools.annotation.state;
  return !!state && state.getAllAnnotations()
    .filter((a) => a.metadata.toolName === 'DICOMSRDisplay').length === count;
}"""

_SR_DRAWN_MEASUREMENTS = """() => window.cornerstoneTools.annotation.state.getAllAnnotations()
  .filter((a) => a.metadata.toolName === 'DICOMSRDisplay')
  .map((a) => {
    const imageId = a.metadata.referencedImageId;
    return {
      label: a.data.label,
      imageId,
      points: a.data.handles.points.map((p) => window.cornerstone.utilities.worldToImageCoords(imageId, p)),
    };
  })"""


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
