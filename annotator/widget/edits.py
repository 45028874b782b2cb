"""Edits the reviewer makes in the mark layers, turned into edits of the annotation.

:class:`LayerEdits` listens to the working layers of
:class:`~annotator.widget.layers.MarkLayers` (needle path, out-of-plane dot,
target, spread and danger paint) and hands each finished edit to the review
widget as a ``ClipAnnotation -> ClipAnnotation`` function
(``ProcedureReviewWidget._apply``), so every change goes through the
annotation, the single source of truth. Events the layers emit while the
widget refills them (:attr:`MarkLayers.syncing`) are not edits.

napari emits ``paint`` before it writes the painted pixels: a painted layer is
read on the next loop turn, or earlier when the layers are about to be
refilled (the widget's ``refresh`` calls :meth:`LayerEdits.flush_paint` first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer

from annotator.widget.panel import DEFAULT_TARGET_NAME
from archive.model import NeedleView
from archive.review import ClipAnnotation, MarkKind, NeedleMark, TargetMark

if TYPE_CHECKING:
    from annotator.widget.layers import MarkLayers
    from annotator.widget.widget import ProcedureReviewWidget

#: Layer events that mean an edit is finished (napari ActionType values).
DONE_ACTIONS = {"added", "changed", "removed"}


class LayerEdits:
    """The mark layers' edits of the review widget's open clip.

    Parameters
    ----------
    host : ProcedureReviewWidget
        The widget: its ``marks``, ``annotation``, shown frame, target name
        field and ``_apply`` / ``_refill_later``.
    """

    def __init__(self, host: ProcedureReviewWidget) -> None:
        self.host = host
        self._pending_paint: set[MarkKind] = set()
        self._paint_timer = QTimer(host)  # owned by the widget: it dies with it
        self._paint_timer.setSingleShot(True)
        self._paint_timer.timeout.connect(self.flush_paint)

    def connect(self, marks: MarkLayers) -> None:
        """Listen to the working layers of a newly opened clip."""
        marks.needle.events.data.connect(self._on_needle_edit)
        marks.needle_dot.events.data.connect(self._on_needle_dot_edit)
        marks.target.events.data.connect(self._on_target_edit)
        marks.spread.events.paint.connect(self._on_spread_paint)
        marks.danger.events.paint.connect(self._on_danger_paint)

    def _finished(self, event: Any) -> MarkLayers | None:
        """The layers when ``event`` is a finished edit by the reviewer, else ``None``."""
        marks = self.host.marks
        if marks is None or marks.syncing or str(event.action) not in DONE_ACTIONS:
            return None
        return marks

    def _on_needle_edit(self, event: Any) -> None:
        if (marks := self._finished(event)) is None:
            return
        frame, points = self.host._shown_frame, marks.read_needle_path()
        if points is None:
            self._remove_needle(frame, NeedleView.IN_PLANE)
        else:
            # built inside the edit: a path that breaks the needle convention is refused with the reason
            self.host._apply(lambda a: a.with_needle(frame, NeedleMark.oriented(points, NeedleView.IN_PLANE)))

    def _on_needle_dot_edit(self, event: Any) -> None:
        if (marks := self._finished(event)) is None:
            return
        frame, point = self.host._shown_frame, marks.read_needle_dot()
        if point is None:
            self._remove_needle(frame, NeedleView.OUT_OF_PLANE)
        else:
            self.host._apply(lambda a: a.with_needle(frame, NeedleMark((point,), NeedleView.OUT_OF_PLANE)))

    def _remove_needle(self, frame: int, view: NeedleView) -> None:
        annotation = self.host.annotation
        stored = annotation.needle.get(frame) if annotation is not None else None
        if stored is not None and stored.view is view:
            self.host._apply(lambda a: a.without_needle(frame))
        else:
            self.host._refill_later()

    def _on_target_edit(self, event: Any) -> None:
        if (marks := self._finished(event)) is None:
            return
        frame, point, annotation = self.host._shown_frame, marks.read_target(), self.host.annotation
        if point is None:
            if annotation is not None and annotation.is_keyframe(MarkKind.TARGET, frame):
                self.host._apply(lambda a: a.without_target(frame))
            return
        # Moving a shown target keeps its name (interpolation needs equal names); a new one takes the field's.
        shown = annotation.target_at(frame) if annotation is not None else None
        typed = self.host.panel.target_name.currentText().strip() or DEFAULT_TARGET_NAME
        name = shown.name if shown is not None and str(event.action) == "changed" else typed
        self.host._apply(lambda a: a.with_target(frame, TargetMark(point, name)))

    def _on_spread_paint(self, event: Any) -> None:
        self._paint_later(MarkKind.SPREAD)

    def _on_danger_paint(self, event: Any) -> None:
        self._paint_later(MarkKind.DANGER)

    def _paint_later(self, kind: MarkKind) -> None:
        marks = self.host.marks
        if marks is not None and not marks.syncing:
            self._pending_paint.add(kind)
            self._paint_timer.start(0)

    def flush_paint(self) -> None:
        """Read painted masks into the annotation now (before the layers are refilled)."""
        pending, self._pending_paint = self._pending_paint, set()
        marks, annotation = self.host.marks, self.host.annotation
        if marks is None or annotation is None or not pending:
            return
        frame = self.host._shown_frame
        if MarkKind.SPREAD in pending:
            mask = marks.read_spread()
            self.host._apply(lambda a: a.with_spread(frame, mask), refill=False)
        if MarkKind.DANGER in pending:
            masks = marks.read_danger(annotation.danger_at(frame))

            def edit(a: ClipAnnotation) -> ClipAnnotation:
                for name, mask in masks.items():
                    a = a.with_danger(frame, name, mask)
                return a

            self.host._apply(edit, refill=False)
