"""Stepping a napari viewer frame by frame and timing each step until its frame is on screen.

The measuring machinery of ``bench_annotator`` (which see for what a step
measures): a :class:`DrawProbe` that reads back one row of the canvas after
every draw, a :class:`Stepper` that times one step of one viewer, passes
through a clip opened with the reader, in the review widget, or held in
memory (napari alone, the floor), and the interleaved pass that steps the
floor and the review widget in two viewers in alternating blocks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Every this many steps the probe's row is checked against a full screenshot.
VERIFY_EVERY = 50
#: Longest wait for the canvas draw of a step.
DRAW_TIMEOUT_S = 5.0
#: Frames of the in-memory array stepped through by napari alone (the floor of this machine).
FLOOR_FRAMES = 200
#: One-process A/B (``--ab``) and interleaving: blocks of this many steps...
AB_BLOCK_STEPS = 20
#: ...of which the first are not counted.
AB_SETTLE_STEPS = 3


class DrawProbe:
    """Reads back one row of the canvas at the end of every draw, after glFinish.

    Connected last to the vispy canvas's draw event, so it runs after napari
    and vispy have drawn the scene into the canvas's framebuffer.
    """

    def __init__(self, viewer: Any) -> None:
        # napari exposes no public draw hook: the vispy SceneCanvas behind the Qt canvas.
        self.viewer = viewer
        self.scene_canvas = viewer.window._qt_viewer.canvas._scene_canvas
        self.draws = 0
        self.step: int | None = None
        self.row: NDArray[np.uint8] | None = None
        self.scene_canvas.events.draw.connect(self._on_draw, position="last")

    def _on_draw(self, event: Any) -> None:
        from vispy.gloo import read_pixels

        width, height = self.scene_canvas.physical_size
        # read_pixels calls glFinish first; its y is from the bottom, the result's row 0 is the top.
        self.row = read_pixels((0, height // 2, width, 1), alpha=False)[0].copy()
        self.step = int(self.viewer.dims.current_step[0])
        self.draws += 1

    @property
    def screenshot_row(self) -> int:
        """Row of a canvas screenshot (top origin) that the probe reads."""
        height = int(self.scene_canvas.physical_size[1])
        return height - 1 - height // 2

    def disconnect(self) -> None:
        self.scene_canvas.events.draw.disconnect(self._on_draw)


def wait_for_draw(app: Any, probe: DrawProbe, step: int, draws_before: int) -> None:
    """Run the Qt event loop until the canvas has been drawn for ``step``."""
    deadline = time.perf_counter() + DRAW_TIMEOUT_S
    app.processEvents()
    while probe.draws == draws_before or probe.step != step:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the canvas was not drawn for step {step} within {DRAW_TIMEOUT_S} s")
        app.processEvents()


def rss_mb() -> float:
    """Resident set size of this process in MB, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def speckle_clip_frame_source(rows: int, cols: int, n_frames: int) -> Any:
    """Frame t: a fixed speckle texture scrolled by t pixels plus a moving needle line, RGB."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(7)
    # Speckle is correlated over a few pixels: smoothed gamma noise, as JPEG sees a B-mode image.
    noise = rng.gamma(2.0, 40.0, size=(rows, cols + n_frames))
    texture = gaussian_filter(noise, sigma=1.5).clip(0, 255).astype(np.uint8)
    banner = np.zeros((rows, cols, 3), dtype=np.uint8)
    banner[:30, :, :] = (30, 60, 120)

    def frame_at(t: int) -> NDArray[np.uint8]:
        grey = texture[:, t : t + cols].copy()
        depth = 60 + (t * 3) % (rows - 120)
        grey[depth : depth + 3, cols // 4 : cols // 2] = 250
        rgb = np.repeat(grey[:, :, np.newaxis], 3, axis=2)
        rgb[:30] = banner[:30]
        return rgb

    return frame_at


@dataclass
class Stepped:
    """Times of one pass through the clip."""

    steps_ms: list[float] = field(default_factory=list)
    slice_ms: list[float] = field(default_factory=list)
    rss_samples: list[tuple[int, float]] = field(default_factory=list)
    rows_verified: int = 0


class Stepper:
    """Steps one viewer frame by frame and times each step until its frame is drawn."""

    def __init__(self, viewer: Any, app: Any) -> None:
        self.viewer, self.app = viewer, app
        self.probe = DrawProbe(viewer)
        self.previous_row: NDArray[np.uint8] | None = None
        self.rows_verified = 0

    def step(self, index: int, verify: bool = False) -> tuple[float, float]:
        """Show frame ``index``; return (step, slice) in ms. ``verify``: compare with a screenshot."""
        probe = self.probe
        draws_before = probe.draws
        started = time.perf_counter()
        self.viewer.dims.set_current_step(0, index)
        sliced = time.perf_counter()
        wait_for_draw(self.app, probe, index, draws_before)
        done = time.perf_counter()
        assert probe.row is not None
        if self.previous_row is not None and np.array_equal(probe.row, self.previous_row):
            raise RuntimeError(f"step {index}: the drawn canvas row did not change from the last frame")
        self.previous_row = probe.row
        if verify:
            shot = self.viewer.screenshot(canvas_only=True, flash=False)
            if not np.array_equal(shot[probe.screenshot_row, :, :3], probe.row):
                raise RuntimeError(f"step {index}: the probe's row differs from the screenshot's")
            self.rows_verified += 1
        return (done - started) * 1000.0, (sliced - started) * 1000.0


def step_through(viewer: Any, app: Any, n_frames: int) -> Stepped:
    """Step through every frame; each step ends when the new frame is drawn (see the module doc)."""
    stepper = Stepper(viewer, app)
    stepped = Stepped()
    for index in range(n_frames):
        step_ms, slice_ms = stepper.step(index, verify=index % VERIFY_EVERY == 0)
        stepped.steps_ms.append(step_ms)
        stepped.slice_ms.append(slice_ms)
        if index % 50 == 0 or index == n_frames - 1:
            stepped.rss_samples.append((index, rss_mb()))
    stepped.rows_verified = stepper.rows_verified
    stepper.probe.disconnect()
    return stepped


@contextmanager
def clip_in_review_widget(viewer: Any, app: Any, clip: Path, archive_dir: Path) -> Iterator[Any]:
    """Archive ``clip``, dock the review widget in ``viewer`` and open the clip in it; close it after."""
    from annotator.widget import ProcedureReviewWidget
    from archive.archive import Archive
    from archive.ingest import IngestOutcome, Origin
    from archive.settings import ArchiveSettings

    with Archive.open(ArchiveSettings(archive_dir)) as archive:
        result = archive.ingest(clip, origin=Origin("file", path="benchmark"))
        if result.outcome not in (IngestOutcome.STORED, IngestOutcome.DUPLICATE):
            raise RuntimeError(f"the benchmark clip was not archived: {result.reason}")
        widget = ProcedureReviewWidget(viewer, archive=archive, reviewer="benchmark")
        viewer.window.add_dock_widget(widget, name="Procedure review", area="right")
        widget.open_clip(result.sop_instance_uid)
        if widget.image is None:
            raise RuntimeError("the review widget did not open the benchmark clip")
        app.processEvents()
        try:
            yield widget
        finally:
            widget.close_clip()
            app.processEvents()


def step_through_review_widget(
    viewer: Any, app: Any, clip: Path, archive_dir: Path, n_frames: int
) -> Stepped:
    """The same clip archived and opened in the docked review widget (its mark layers, readout,
    time overlay and panel follow every step), stepped through the same way."""
    with clip_in_review_widget(viewer, app, clip, archive_dir):
        return step_through(viewer, app, n_frames)


def in_memory_frames(rows: int, cols: int, n_frames: int) -> NDArray[np.uint8]:
    """The benchmark clip's first frames as one in-memory RGB array (what the floor pass shows)."""
    source = speckle_clip_frame_source(rows, cols, n_frames)
    return np.stack([source(t) for t in range(n_frames)])


def interleaved_floor_and_widget(
    app: Any, clip: Path, archive_dir: Path, rows: int, cols: int, n_frames: int, blocks: int
) -> dict[str, list[float]]:
    """napari alone and the review widget in two viewers, stepped in alternating blocks.

    The two passes of :func:`run` see the machine minutes apart, and this
    shared VM's speed changes from minute to minute; here both see it within
    seconds: ``blocks`` rounds of :data:`AB_BLOCK_STEPS` steps in each viewer
    (the first :data:`AB_SETTLE_STEPS` of a block not counted), the viewer
    that goes first alternating, over the first ``n_frames`` frames (at most
    :data:`FLOOR_FRAMES`). Returns the counted step times of each.
    """
    import napari

    floor_viewer = napari.Viewer(show=True)
    n_frames = min(n_frames, FLOOR_FRAMES)
    floor_viewer.add_image(in_memory_frames(rows, cols, n_frames), rgb=True, name="in-memory frames")
    widget_viewer = napari.Viewer(show=True)
    times: dict[str, list[float]] = {"floor": [], "widget": []}
    try:
        with clip_in_review_widget(widget_viewer, app, clip, archive_dir):
            steppers = {"floor": Stepper(floor_viewer, app), "widget": Stepper(widget_viewer, app)}
            for block in range(blocks):
                order = ("floor", "widget") if block % 2 == 0 else ("widget", "floor")
                for name in order:
                    for offset in range(AB_BLOCK_STEPS):
                        # Frames 1.. of the in-memory array, so the first step changes the frame.
                        index = 1 + (block * AB_BLOCK_STEPS + offset) % (n_frames - 1)
                        step_ms, _ = steppers[name].step(index)
                        if offset >= AB_SETTLE_STEPS:
                            times[name].append(step_ms)
            for stepper in steppers.values():
                stepper.probe.disconnect()
    finally:
        widget_viewer.close()
        floor_viewer.close()
    return times


def step_through_in_memory(viewer: Any, app: Any, rows: int, cols: int, n_frames: int) -> Stepped:
    """napari alone: the clip's first frames as an in-memory RGB array, stepped through the same way."""
    layer = viewer.add_image(in_memory_frames(rows, cols, n_frames), rgb=True, name="in-memory frames")
    app.processEvents()
    viewer.screenshot(canvas_only=True, flash=False)
    stepped = step_through(viewer, app, n_frames)
    viewer.layers.remove(layer)
    app.processEvents()
    return stepped
