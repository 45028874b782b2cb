"""A frame step repaints only what changed in the review widget's dock, not the whole Review tab."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication, QPushButton, QWidget
from widget_fixtures import ViewerFactory, open_archived

from archive.archive import Archive

pytestmark = pytest.mark.gui

LUMBAR = "l4_tt_inplane_mono"


class PaintCounter(QObject):
    """Counts the paint events of the widgets under a root widget."""

    def __init__(self, root: QWidget) -> None:
        super().__init__()
        self.root = root
        self.paints: Counter[str] = Counter()

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:  # noqa: N802 (Qt's name)
        if (
            event is not None
            and event.type() == QEvent.Type.Paint
            and isinstance(watched, QWidget)
            and (watched is self.root or self.root.isAncestorOf(watched))
        ):
            self.paints[watched.objectName()] += 1
        return False


def test_frame_steps_repaint_the_time_label_not_the_buttons(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    viewer = make_napari_viewer(show=True)
    widget = open_archived(viewer, qtbot, archive, sample_dir / f"{LUMBAR}.dcm")
    app = QApplication.instance()
    assert app is not None
    counter = PaintCounter(widget)
    app.installEventFilter(counter)
    try:
        # The first step after opening also paints the newly shown tab: count from the second.
        widget.go_to_frame(1)
        qtbot.waitUntil(lambda: counter.paints["frame_label"] >= 1)
        app.processEvents()
        counter.paints.clear()
        for step, frame in enumerate(range(2, 7), start=1):
            widget.go_to_frame(frame)
            qtbot.waitUntil(lambda step=step: counter.paints["frame_label"] >= step)
            app.processEvents()
    finally:
        app.removeEventFilter(counter)
    buttons = {button.objectName() for button in widget.findChildren(QPushButton)}
    assert "save" in buttons
    assert counter.paints["frame_label"] >= 5
    assert not {name: n for name, n in counter.paints.items() if name in buttons}
    assert counter.paints["events_label"] == 0
