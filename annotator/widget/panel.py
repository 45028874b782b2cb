"""The "Review" tab of the review widget: tool and event buttons, readout, status and save.

:class:`ReviewPanel` is layout and display only. Its buttons call the
actions the :class:`~annotator.widget.ProcedureReviewWidget` hands in by
name (each button's object name is its action's name, so tests find them),
and :meth:`ReviewPanel.show_state` writes what the widget knows into the
labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from annotator.overlay import frame_time_label
from annotator.widget.readout import FrameReadout
from archive.calibration import Calibration
from archive.model import ClipEvent, ReviewStatus
from archive.review import DANGER_CLASSES, ClipAnnotation, MarkKind
from archive.review.temporal import MarkState

#: Name of the target mark when the reviewer gives none.
DEFAULT_TARGET_NAME = "target"
#: Event buttons: (event, button text); the action of each is ``"event_" + value with underscores``.
EVENT_BUTTONS = (
    (ClipEvent.NEEDLE_VISIBLE, "Needle visible"),
    (ClipEvent.TARGET_REACHED, "Target reached"),
    (ClipEvent.INJECTION_START, "Injection start"),
    (ClipEvent.INJECTION_END, "Injection end"),
)
#: Style of the calibration label of a clip without calibration.
UNCALIBRATED_STYLE = "color: #ff453a; font-weight: bold"
#: Readout rows: (FrameReadout field, label object name, row title).
READOUT_ROWS = (
    ("tip_to_target_mm", "readout_tip_to_target", "Tip to target"),
    ("needle_angle_deg", "readout_angle", "Needle to skin"),
    ("spread_area_mm2", "readout_spread", "Spread area"),
    ("nearest_danger_mm", "readout_danger", "Nearest danger"),
)


def event_action(event: ClipEvent) -> str:
    """Action (and button object name) marking ``event`` on the current frame."""
    return "event_" + event.value.replace(" ", "_")


def readout_text(reading: FrameReadout, proposed: FrameReadout | None, field: str) -> str:
    """One readout line: the reviewed value, and the proposed one beside it when a proposal is shown."""
    reviewed: str = getattr(reading, field).text
    if proposed is None:
        return reviewed
    return f"reviewed: {reviewed} · proposed: {getattr(proposed, field).text}"


def _label(name: str, text: str = "") -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    label.setWordWrap(True)
    return label


def _set_style(widget: QWidget, style: str) -> None:
    """Set a widget's style sheet unless it has it already (setting one restyles and repaints it)."""
    if widget.styleSheet() != style:
        widget.setStyleSheet(style)


def mark_state(annotation: ClipAnnotation, kind: MarkKind, frame: int) -> str:
    """``"keyframe"``, ``"interpolated from 3, 7"``, ``"held from 3"`` or ``"—"`` (1-based frames)."""
    state = annotation.mark_state(kind, frame)
    if state is None:
        return "—"
    if state is MarkState.KEYFRAME:
        return "keyframe"
    before = annotation.previous_keyframe(kind, frame)
    after = annotation.next_keyframe(kind, frame)
    if state is MarkState.INTERPOLATED and before is not None and after is not None:
        return f"interpolated from {before + 1}, {after + 1}"
    return f"held from {before + 1}" if before is not None else state.value


def keyframes_text(annotation: ClipAnnotation, kind: MarkKind) -> str:
    """The keyframes of ``kind`` as 1-based frame numbers, e.g. ``"needle keyframes: 3, 7"``."""
    frames = ", ".join(str(f + 1) for f in annotation.keyframes(kind)) or "none"
    return f"{kind.value} keyframes: {frames}"


class ReviewPanel(QWidget):
    """Buttons, fields and labels of the Review tab.

    Parameters
    ----------
    actions : mapping of str to callable
        What each button does, by button object name: ``tool_needle``,
        ``tool_needle_dot``, ``tool_target``, ``tool_spread``,
        ``tool_danger``, ``tool_erase``, ``previous_keyframe``,
        ``next_keyframe``, ``copy_from_previous``, ``make_keyframe``, one per
        :data:`EVENT_BUTTONS` (:func:`event_action`), ``event_adverse``,
        ``set_status`` and ``save``.
    danger_classes : sequence of str, optional
        Choices of the danger class box (any other name may be typed).
    """

    def __init__(
        self, actions: Mapping[str, Callable[[], object]], danger_classes: Sequence[str] = DANGER_CLASSES
    ) -> None:
        super().__init__()
        self._actions = actions
        self.buttons: dict[str, QPushButton] = {}
        layout = QVBoxLayout(self)
        self.clip_label = _label("clip_label", "no clip open: choose one in the Clips tab")
        self.calibration_label = _label("calibration_label")
        self.frame_label = _label("frame_label")
        for label in (self.clip_label, self.calibration_label, self.frame_label):
            layout.addWidget(label)

        tools = QGroupBox("Mark")
        grid = QGridLayout(tools)
        for i, (name, text) in enumerate(
            (
                ("tool_needle", "Needle"),
                ("tool_needle_dot", "Out-of-plane"),
                ("tool_target", "Target"),
                ("tool_spread", "Spread"),
                ("tool_danger", "Danger"),
                ("tool_erase", "Erase"),
            )
        ):
            grid.addWidget(self._button(name, text), i // 3, i % 3)
        self.danger_class = QComboBox()
        self.danger_class.setObjectName("danger_class")
        self.danger_class.setEditable(True)
        self.danger_class.addItems(list(danger_classes))
        self.target_name = QComboBox()
        self.target_name.setObjectName("target_name")
        self.target_name.setEditable(True)
        self.target_name.addItem(DEFAULT_TARGET_NAME)
        form = QFormLayout()
        form.addRow("Danger class", self.danger_class)
        form.addRow("Target name", self.target_name)
        grid.addLayout(form, 2, 0, 1, 3)
        grid.addWidget(self._button("previous_keyframe", "◀ Keyframe"), 3, 0)
        grid.addWidget(self._button("next_keyframe", "Keyframe ▶"), 3, 1)
        grid.addWidget(self._button("copy_from_previous", "Copy from previous"), 3, 2)
        grid.addWidget(self._button("make_keyframe", "Make keyframe"), 5, 0, 1, 3)
        self.mark_state_label = _label("mark_state")
        grid.addWidget(self.mark_state_label, 4, 0, 1, 3)
        layout.addWidget(tools)

        events = QGroupBox("Events on this frame")
        events_layout = QVBoxLayout(events)
        events_grid = QGridLayout()
        for i, (event, text) in enumerate(EVENT_BUTTONS):
            events_grid.addWidget(self._button(event_action(event), text), i // 2, i % 2)
        self.adverse_note = QLineEdit()
        self.adverse_note.setObjectName("adverse_note")
        self.adverse_note.setPlaceholderText("what happened, e.g. leg paraesthesia")
        events_grid.addWidget(self.adverse_note, 2, 0)
        events_grid.addWidget(self._button("event_adverse", "Adverse event"), 2, 1)
        events_layout.addLayout(events_grid)
        self.events_label = _label("events_label")
        # Word-wrapped labels get no height-for-width in a dock: reserve two lines.
        self.events_label.setMinimumHeight(2 * self.events_label.fontMetrics().lineSpacing() + 4)
        events_layout.addWidget(self.events_label)
        layout.addWidget(events)

        readout = QGroupBox("Readout (this frame)")
        readout_form = QFormLayout(readout)
        self.readout_labels: dict[str, QLabel] = {}
        for field, name, title in READOUT_ROWS:
            self.readout_labels[field] = _label(name, "—")
            readout_form.addRow(title, self.readout_labels[field])
        layout.addWidget(readout)

        review = QGroupBox("Save and review")
        review_layout = QGridLayout(review)
        self.status_label = _label("status_label")
        self.status_combo = QComboBox()
        self.status_combo.setObjectName("status_combo")
        self.status_combo.addItems([s.value for s in ReviewStatus])
        self.comment = QLineEdit()
        self.comment.setObjectName("comment")
        self.comment.setPlaceholderText("comment (needed for needs-rework)")
        self.owner = QComboBox()
        self.owner.setObjectName("annotation_owner")
        self.owner.setToolTip("whose annotation of this clip is shown (an approver opens the reviewer's)")
        owner_form = QFormLayout()
        owner_form.addRow("Annotation of", self.owner)
        review_layout.addLayout(owner_form, 0, 0, 1, 3)
        review_layout.addWidget(self.status_label, 1, 0, 1, 3)
        review_layout.addWidget(self.status_combo, 2, 0)
        review_layout.addWidget(self.comment, 2, 1)
        review_layout.addWidget(self._button("set_status", "Set status"), 2, 2)
        review_layout.addWidget(self._button("save", "Save"), 3, 0, 1, 3)
        self.message = _label("message")
        review_layout.addWidget(self.message, 4, 0, 1, 3)
        layout.addWidget(review)
        layout.addStretch(1)

    def add_section(self, section: QWidget) -> None:
        """Add a group of controls (e.g. the proposals') after the readout."""
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.count() - 2, section)  # before "Save and review" and the stretch

    def offer(self, danger_classes: Sequence[str], target_names: Sequence[str]) -> None:
        """Refill the danger class and target name boxes with the choices for the open clip.

        Parameters
        ----------
        danger_classes : sequence of str
            Danger classes to offer (the first is chosen); any other may still be typed.
        target_names : sequence of str
            Target names to offer (the first is chosen); none offers
            :data:`DEFAULT_TARGET_NAME`. Any other name may still be typed.
        """
        for combo, names in (
            (self.danger_class, list(danger_classes)),
            (self.target_name, list(target_names) or [DEFAULT_TARGET_NAME]),
        ):
            combo.clear()
            combo.addItems(names)
            combo.setCurrentIndex(0)

    def _button(self, name: str, text: str) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        action = self._actions[name]
        button.clicked.connect(lambda _checked=False: action())
        self.buttons[name] = button
        return button

    def clear(self) -> None:
        """Show that no clip is open."""
        self.clip_label.setText("no clip open: choose one in the Clips tab")
        for label in (self.calibration_label, self.frame_label, self.mark_state_label, self.events_label):
            label.setText("")
        self.status_label.setText("")
        for label in self.readout_labels.values():
            label.setText("—")

    def show_state(
        self,
        annotation: ClipAnnotation,
        frame: int,
        calibration: Calibration | None,
        frame_times_ms: Sequence[float] | None,
        reading: FrameReadout,
        version_text: str,
        proposed: FrameReadout | None = None,
    ) -> None:
        """Write the current frame's state into the labels.

        Parameters
        ----------
        annotation : ClipAnnotation
            The annotation being edited.
        frame : int
            0-based frame shown.
        calibration : Calibration or None
            ``None`` shows the clip as uncalibrated.
        frame_times_ms : sequence of float or None
            Start of each frame in ms (for the time label).
        reading : FrameReadout
            The frame's measurements.
        version_text : str
            E.g. ``"version 3 · UNSAVED CHANGES"``.
        proposed : FrameReadout, optional
            The measurements of the automatic proposal drawn on this frame:
            each line then reads ``reviewed: … · proposed: …``.
        """
        if calibration is None:
            self.calibration_label.setText("UNCALIBRATED: no ultrasound regions, mm readouts unavailable")
            _set_style(self.calibration_label, UNCALIBRATED_STYLE)
        else:
            row_mm, col_mm = calibration.pixel_size_mm
            self.calibration_label.setText(f"calibrated: {row_mm:.3f} × {col_mm:.3f} mm per pixel")
            _set_style(self.calibration_label, "")
        self.frame_label.setText(
            frame_time_label(frame, annotation.n_frames, frame_times_ms, calibrated=calibration is not None)
        )
        self.mark_state_label.setText(
            " · ".join(f"{kind.value}: {mark_state(annotation, kind, frame)}" for kind in MarkKind)
            + "\n"
            + "\n".join(keyframes_text(annotation, kind) for kind in MarkKind)
        )
        events = [f"{e.value} {f + 1}" for e, f in annotation.events.items()]
        events += [f"adverse {a.frame + 1} ({a.note})" for a in annotation.adverse_events]
        self.events_label.setText("events (frame): " + (", ".join(events) or "none"))
        self.status_label.setText(f"{annotation.reviewer}: {annotation.status.value}, {version_text}")
        for field, label in self.readout_labels.items():
            label.setText(readout_text(reading, proposed, field))


class ScrolledPage(QScrollArea):
    """A frameless scroll area holding one page, resized to the area's width.

    A label whose text changes (the frame time, on every frame step) asks
    its ancestors to lay out again; a QTabWidget answers that by repainting
    the whole tab. The scroll area ends the request at the page, so a step
    repaints only the labels that changed. It asks for the page's own size
    hints (and room for a vertical scroll bar), so the dock is laid out as
    without it; when the dock is shorter than the page, the page scrolls.

    Parameters
    ----------
    page : QWidget
        The tab's page (the :class:`ReviewPanel`).
    """

    def __init__(self, page: QWidget) -> None:
        super().__init__()
        self.setObjectName("review_scroll")
        self.setWidget(page)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _with_scroll_bar(self, size: QSize) -> QSize:
        bar = self.verticalScrollBar()
        return QSize(size.width() + (bar.sizeHint().width() if bar is not None else 0), size.height())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        """The page's size hint, plus a vertical scroll bar's width."""
        page = self.widget()
        return super().sizeHint() if page is None else self._with_scroll_bar(page.sizeHint())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        """The page's minimum size hint, plus a vertical scroll bar's width."""
        page = self.widget()
        return super().minimumSizeHint() if page is None else self._with_scroll_bar(page.minimumSizeHint())
