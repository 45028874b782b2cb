"""The "Procedure review" dock widget: open an archived clip, mark it, measure, save, review.

The widget holds a :class:`~annotator.widget.session.ReviewSession` (the
annotation being edited, the single source of truth) and the
:class:`~annotator.widget.layers.MarkLayers` that show the current frame of
it. Every edit goes ``layer event -> ClipAnnotation.with_… -> session``; the
layers are then refilled from the annotation, so what is on screen is always
what will be saved. Buttons, shortcuts and tests call the same small public
methods (``tool_needle``, ``mark_event``, ``save``, ...). The layers' edits are
read by :class:`~annotator.widget.edits.LayerEdits`; automatic proposals are
run, drawn and accepted by :class:`~annotator.widget.proposals.ProposalReview`.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFormLayout,
    QInputDialog,
    QLineEdit,
    QPlainTextEdit,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from annotator.errors import ClipOpenError
from annotator.overlay import attach_time_overlay, current_frame_index
from annotator.reader import notify_frame_error, read_clip
from annotator.widget.clip_list import ClipList
from annotator.widget.draw_skip import EmptyMarkSkip
from annotator.widget.edits import LayerEdits
from annotator.widget.layers import MarkLayers
from annotator.widget.panel import EVENT_BUTTONS, ReviewPanel, ScrolledPage, event_action
from annotator.widget.proposals import ProposalReview
from annotator.widget.readout import FrameReadout, frame_readout
from annotator.widget.session import ReviewSession, archived_clip_levels, archived_clip_path
from annotator.widget.shortcuts import bind_shortcuts, help_text
from archive.anatomy import danger_classes_for, target_names_for
from archive.archive import Archive
from archive.calibration import Calibration, calibration_or_none
from archive.errors import AnnotationError, StaleAnnotationError
from archive.model import ClipEvent, ReviewStatus
from archive.review import ClipAnnotation, MarkKind
from archive.review.store import resolve_reviewer
from archive.settings import ArchiveSettings

if TYPE_CHECKING:
    from napari.layers import Image
    from napari.viewer import Viewer

logger = logging.getLogger(__name__)


def _run_and_clear(undo: list[Callable[[], None]]) -> None:
    """Run and forget the undo callables of the open clip (the widget is going)."""
    while undo:
        undo.pop()()


class ProcedureReviewWidget(QWidget):
    """Dock widget to review ultrasound-guided procedure clips from the archive.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer to show clips in.
    archive : Archive, optional
        The archive; by default the one ``USARCHIVE_HOME`` / ``USARCHIVE_DB``
        (or the per-user default) names.
    reviewer : str, optional
        The reviewer's user name; by default from the configuration or
        ``USARCHIVE_REVIEWER``, else asked once when a clip is opened.
    napari_patches : bool, optional
        ``False``: napari's stock behaviour, no reach into its internals
        (:mod:`annotator._napari_compat`): the slider numbered from 0, every
        mark layer drawn, the time overlay's box rebuilt at each step. The
        changes made to napari's objects are undone when the clip or the
        widget is closed.
    """

    def __init__(
        self,
        napari_viewer: Viewer,
        archive: Archive | None = None,
        reviewer: str | None = None,
        *,
        napari_patches: bool = True,
    ) -> None:
        super().__init__()
        self.setObjectName("procedure_review")
        self.viewer = napari_viewer
        self.archive = archive if archive is not None else Archive.open(ArchiveSettings.from_environment())
        self.session: ReviewSession | None = None
        self.image: Image | None = None
        self.marks: MarkLayers | None = None
        self.calibration: Calibration | None = None
        self._detach_overlay: Callable[[], None] | None = None
        self._mark_skip: EmptyMarkSkip | None = None
        self.napari_patches = napari_patches
        # What undoes the changes to napari's objects for the open clip (run by close_clip, or on destroy).
        self._undo_napari: list[Callable[[], None]] = []
        self._frame_times_ms: tuple[float, ...] | None = None
        self._shown_frame = 0
        # Timers owned by the widget: they die with it, and several requests in one loop turn coalesce.
        self._refill_timer = QTimer(self)
        self._refill_timer.setSingleShot(True)
        self._refill_timer.timeout.connect(self.refresh)
        self.edits = LayerEdits(self)

        self.reviewer_field = QLineEdit(reviewer or resolve_reviewer(self.archive.settings) or "")
        self.reviewer_field.setObjectName("reviewer")
        self.reviewer_field.setPlaceholderText("your user name (asked when you open a clip)")
        self.clip_list = ClipList(self.archive, self._reviewer_or_none, self.open_clip)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        clips_tab = QWidget()
        clips_layout = QVBoxLayout(clips_tab)
        who = QFormLayout()
        who.addRow("Reviewer", self.reviewer_field)
        clips_layout.addLayout(who)
        clips_layout.addWidget(self.clip_list)
        self.tabs.addTab(clips_tab, "Clips")
        actions: dict[str, Callable[[], object]] = {
            name: getattr(self, name)
            for name in (
                "tool_needle",
                "tool_needle_dot",
                "tool_target",
                "tool_spread",
                "tool_danger",
                "tool_erase",
                "previous_keyframe",
                "next_keyframe",
                "copy_from_previous",
                "make_keyframe",
                "save",
            )
        }
        actions.update({event_action(event): partial(self.mark_event, event) for event, _ in EVENT_BUTTONS})
        actions["event_adverse"] = lambda: self.add_adverse_event(self.panel.adverse_note.text())
        actions["set_status"] = lambda: self.set_status(
            self.panel.status_combo.currentText(), self.panel.comment.text()
        )
        self.proposals = ProposalReview(self)
        actions["accept_proposal_frame"] = self.proposals.accept_frame
        actions["reject_proposal_frame"] = self.proposals.reject_frame
        self.panel = ReviewPanel(actions)
        self.panel.owner.textActivated.connect(self.show_annotation_of)
        self.panel.add_section(self.proposals.panel)
        self.tabs.addTab(ScrolledPage(self.panel), "Review")
        self.help = QPlainTextEdit(help_text())
        self.help.setObjectName("help")
        self.help.setReadOnly(True)
        self.tabs.addTab(self.help, "Help")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)

        self.viewer.dims.events.current_step.connect(self._on_frame_change)
        unbind = bind_shortcuts(self.viewer, actions)
        # The widget's C++ side can go before the viewer: then forget it (no reference to self).
        on_step, dims_events, undo_napari = self._on_frame_change, self.viewer.dims.events, self._undo_napari

        def on_destroyed(*_: object) -> None:
            dims_events.current_step.disconnect(on_step)
            unbind()
            _run_and_clear(undo_napari)

        self.destroyed.connect(on_destroyed)
        self.clip_list.refresh()
        self._update_panel()

    # -- opening ------------------------------------------------------------------------------

    def _reviewer_or_none(self) -> str | None:
        return self.reviewer_field.text().strip() or None

    def ensure_reviewer(self) -> str | None:
        """The reviewer's user name, asked once in a dialog when neither configured nor typed."""
        name = self._reviewer_or_none()
        if name is None:
            answer, ok = QInputDialog.getText(
                self, "Reviewer", "Your user name (saved annotations carry it):", text=getpass.getuser()
            )
            if ok and answer.strip():
                name = answer.strip()
                self.reviewer_field.setText(name)
        return name

    def open_clip(self, sop_instance_uid: str) -> None:
        """Show an archived clip with the reviewer's latest annotation of it.

        Parameters
        ----------
        sop_instance_uid : str
            SOP Instance UID of a clip in the archive.
        """
        reviewer = self.ensure_reviewer()
        if reviewer is None:
            self._say("no reviewer name given: the clip was not opened")
            return
        try:
            path = archived_clip_path(self.archive, sop_instance_uid)
            levels = archived_clip_levels(self.archive, sop_instance_uid)
            data, kwargs, _ = read_clip(path, on_error=notify_frame_error)
        except (AnnotationError, ClipOpenError) as exc:
            self._warn(f"cannot open the clip: {exc}")
            return
        self.close_clip()
        self.image = self.viewer.add_image(data, **kwargs)
        self.calibration = calibration_or_none(data.header)
        self._frame_times_ms = kwargs["metadata"]["frame_times_ms"]
        n_frames, rows, cols = data.shape[:3]
        self.session = ReviewSession(
            self.archive, sop_instance_uid, reviewer, n_frames, (rows, cols), user=reviewer
        )
        self._fill_owners()
        # The clip's indexed levels choose what is offered; a clip of unknown level gets every class.
        self.panel.offer(danger_classes_for(levels), target_names_for(levels))
        scale = (float(kwargs["scale"][1]), float(kwargs["scale"][2]))
        self.marks = MarkLayers(
            self.viewer,
            (rows, cols),
            scale,
            [self.panel.danger_class.itemText(i) for i in range(self.panel.danger_class.count())],
            units=(str(kwargs["units"][1]), str(kwargs["units"][2])),
        )
        self.proposals.open(
            self.image, (rows, cols), scale, (str(kwargs["units"][1]), str(kwargs["units"][2]))
        )
        self.edits.connect(self.marks)
        self._detach_overlay = attach_time_overlay(
            self.viewer, self.image, napari_patches=self.napari_patches
        )
        self.viewer.layers.selection.active = self.marks.needle
        self._mark_skip = EmptyMarkSkip(
            self.viewer, (*self.marks.all, *self.proposals.drawn_layers), enabled=self.napari_patches
        )
        self._undo_napari[:] = [self._detach_overlay, self._mark_skip.disconnect]
        self.panel.clip_label.setText(f"{kwargs['name']} — {sop_instance_uid}")
        self.tabs.setCurrentIndex(1)
        self.refresh()
        logger.info("opened clip %s for %s", sop_instance_uid, reviewer)

    def _fill_owners(self) -> None:
        session = self.session
        combo = self.panel.owner
        combo.blockSignals(True)
        combo.clear()
        if session is not None:
            names = set(self.archive.annotations.reviewers(session.sop_instance_uid))
            combo.addItems(sorted(names | {session.user, session.reviewer}))
            combo.setCurrentText(session.reviewer)
        combo.blockSignals(False)

    def show_annotation_of(self, owner: str) -> bool:
        """Show another reviewer's annotation of the open clip (e.g. to approve it).

        Edits, saves and status changes then apply to ``owner``'s annotation and
        are recorded as made by the current reviewer.

        Parameters
        ----------
        owner : str
            The reviewer whose annotation to show.

        Returns
        -------
        bool
            ``False`` (nothing changes) when no clip is open or the shown
            annotation has unsaved edits.
        """
        self.edits.flush_paint()
        session = self.session
        if session is None:
            return False
        if session.dirty:
            self._warn(f"{session.reviewer}'s annotation has unsaved edits: save them first")
            self._fill_owners()
            return False
        self.session = ReviewSession(
            self.archive,
            session.sop_instance_uid,
            owner,
            session.n_frames,
            session.frame_shape,
            user=session.user,
        )
        self._fill_owners()
        self._say(f"showing {owner}'s annotation")
        self.refresh()
        return True

    def close_clip(self) -> None:
        """Remove the clip and its mark layers from the viewer (unsaved edits are dropped)."""
        if self._detach_overlay is not None:
            self._detach_overlay()
            self._detach_overlay = None
        if self._mark_skip is not None:
            self._mark_skip.disconnect()
            self._mark_skip = None
        self._undo_napari.clear()
        self.proposals.close()
        for layer in (*(self.marks.all if self.marks else ()), *([self.image] if self.image else [])):
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.session, self.image, self.marks, self.calibration = None, None, None, None
        self._update_panel()

    # -- reading the state --------------------------------------------------------------------

    @property
    def annotation(self) -> ClipAnnotation | None:
        """The annotation being edited (``None`` when no clip is open)."""
        return None if self.session is None else self.session.annotation

    def current_frame(self) -> int:
        """0-based index of the frame the viewer shows (0 when no clip is open)."""
        if self.image is None:
            return 0
        return current_frame_index(self.viewer, self.image)

    def readout(self) -> FrameReadout | None:
        """The measurements of the current frame (``None`` when no clip is open)."""
        if self.session is None:
            return None
        return frame_readout(self.session.annotation, self.calibration, self.current_frame())

    # -- navigation ---------------------------------------------------------------------------

    def go_to_frame(self, frame: int) -> None:
        """Show frame ``frame`` (0-based)."""
        self.viewer.dims.set_current_step(0, int(frame))

    def _keyframe(self, step: Callable[[ClipAnnotation, MarkKind, int], int | None]) -> None:
        annotation = self.annotation
        if annotation is None:
            return
        frame = self.current_frame()
        found = [
            f
            for kind in (MarkKind.NEEDLE, MarkKind.TARGET)
            if (f := step(annotation, kind, frame)) is not None
        ]
        if found:
            self.go_to_frame(min(found, key=lambda f: abs(f - frame)))
        else:
            self._say("no further needle or target keyframe in that direction")

    def next_keyframe(self) -> None:
        """Go to the nearest later needle or target keyframe."""
        self._keyframe(lambda a, kind, f: a.next_keyframe(kind, f))

    def previous_keyframe(self) -> None:
        """Go to the nearest earlier needle or target keyframe."""
        self._keyframe(lambda a, kind, f: a.previous_keyframe(kind, f))

    # -- tools --------------------------------------------------------------------------------

    def _activate(self, layer: Any, mode: str) -> None:
        self.viewer.layers.selection.active = layer
        layer.mode = mode

    def tool_needle(self) -> None:
        """Draw the in-plane needle as a path, skin entry to tip."""
        if self.marks is not None:
            self._activate(self.marks.needle, "add_path")

    def tool_needle_dot(self) -> None:
        """Click the out-of-plane needle (a dot)."""
        if self.marks is not None:
            self._activate(self.marks.needle_dot, "add")

    def tool_target(self) -> None:
        """Click the target."""
        if self.marks is not None:
            self._activate(self.marks.target, "add")

    def tool_spread(self) -> None:
        """Paint injectate spread."""
        if self.marks is not None:
            self.marks.spread.selected_label = 1
            self._activate(self.marks.spread, "paint")

    def tool_danger(self) -> None:
        """Paint the danger class chosen in the combo box."""
        if self.marks is not None:
            self.marks.danger.selected_label = self.marks.danger_label(self.panel.danger_class.currentText())
            self._activate(self.marks.danger, "paint")

    def tool_erase(self) -> None:
        """Erase paint on the active mask layer, or delete the needle/target keyframe of this frame."""
        if self.marks is None or self.session is None:
            return
        active = self.viewer.layers.selection.active
        if active in (self.marks.spread, self.marks.danger):
            active.mode = "erase"
            return
        frame = self.current_frame()
        kind = MarkKind.TARGET if active is self.marks.target else MarkKind.NEEDLE
        if not self.session.annotation.is_keyframe(kind, frame):
            self._say(f"frame {frame + 1} has no {kind.value} keyframe to delete")
            return
        remove = ClipAnnotation.without_target if kind is MarkKind.TARGET else ClipAnnotation.without_needle
        self._apply(lambda a: remove(a, frame))

    def _active_kind(self) -> MarkKind:
        active = self.viewer.layers.selection.active
        if self.marks is None:
            return MarkKind.NEEDLE
        return {
            id(self.marks.target): MarkKind.TARGET,
            id(self.marks.spread): MarkKind.SPREAD,
            id(self.marks.danger): MarkKind.DANGER,
        }.get(id(active), MarkKind.NEEDLE)

    def copy_from_previous(self, kind: MarkKind | str | None = None) -> None:
        """Make this frame a keyframe holding the previous frame's mark.

        Parameters
        ----------
        kind : MarkKind or str, optional
            Which mark; by default the one of the active layer.
        """
        chosen = MarkKind(kind) if kind is not None else self._active_kind()
        frame = self.current_frame()
        self._apply(lambda a: a.copy_from_previous(chosen, frame))

    def make_keyframe(self, kind: MarkKind | str | None = None) -> None:
        """Make the carried mark this frame shows a keyframe (one keystroke, Alt-K).

        Parameters
        ----------
        kind : MarkKind or str, optional
            Which mark; by default the active layer's if it is carried here,
            else every kind carried on this frame.
        """
        annotation, frame = self.annotation, self.current_frame()
        if annotation is None:
            self._say("open a clip first")
            return
        if kind is not None:
            kinds = [MarkKind(kind)]
        elif annotation.is_carried(self._active_kind(), frame):
            kinds = [self._active_kind()]
        else:
            kinds = [k for k in MarkKind if annotation.is_carried(k, frame)] or [self._active_kind()]

        def edit(a: ClipAnnotation) -> ClipAnnotation:
            for chosen in kinds:
                a = a.make_keyframe(chosen, frame)
            return a

        self._apply(edit)

    # -- events -------------------------------------------------------------------------------

    def mark_event(self, event: ClipEvent | str) -> None:
        """Mark ``event`` (not an adverse event) on the current frame."""
        frame = self.current_frame()
        self._apply(lambda a: a.with_event(event, frame))

    def add_adverse_event(self, note: str) -> None:
        """Record an adverse event on the current frame with a note saying what happened."""
        frame = self.current_frame()
        self._apply(lambda a: a.with_adverse_event(frame, note))
        if self.session is not None and any(
            e.note == note.strip() for e in self.session.annotation.adverse_events
        ):
            self.panel.adverse_note.clear()

    def _apply(self, edit: Callable[[ClipAnnotation], ClipAnnotation], *, refill: bool = True) -> None:
        """Apply an edit to the annotation; on refusal say why and show the annotation again.

        With ``refill`` the layers are refilled from the annotation on the next
        loop turn (after napari has finished handling the event that made the edit).
        """
        if self.session is None:
            self._say("open a clip first")
            return
        try:
            self.session.annotation = edit(self.session.annotation)
        except (AnnotationError, ValueError) as exc:
            self._say(str(exc))
            refill = True
        else:
            self.panel.message.clear()
        if refill:
            self._refill_later()
        self._update_panel()

    def _refill_later(self) -> None:
        self._refill_timer.start(0)

    def _on_frame_change(self, event: Any = None) -> None:
        if self.session is not None:
            self.refresh()

    # -- saving and review --------------------------------------------------------------------

    def save(self) -> bool:
        """Save the annotation as a new version; ``False`` (edits kept) when refused."""
        if self.session is None:
            self._say("open a clip first")
            return False
        try:
            saved = self.session.save()
        except StaleAnnotationError as exc:
            self._warn(f"NOT SAVED: {exc}")
            return False
        except AnnotationError as exc:
            self._warn(f"NOT SAVED: {exc}")
            return False
        self._say(
            f"saved version {saved.version}" if saved.created else f"no change since version {saved.version}"
        )
        self.clip_list.refresh()
        self._update_panel()
        return True

    def set_status(self, status: ReviewStatus | str, comment: str | None = None) -> bool:
        """Move the annotation to another review status (saving edits first); ``False`` when refused."""
        if self.session is None:
            self._say("open a clip first")
            return False
        try:
            new = self.session.set_status(status, (comment or "").strip() or None)
        except (AnnotationError, ValueError) as exc:
            self._warn(f"status not changed: {exc}")
            return False
        self.panel.comment.clear()
        self._say(f"status is now {new.value}")
        self.clip_list.refresh()
        self.refresh()
        return True

    def _say(self, text: str) -> None:
        self.panel.message.setText(text)
        logger.info("%s", text)

    def _warn(self, text: str) -> None:
        from napari.utils.notifications import show_warning

        self.panel.message.setText(text)
        logger.warning("%s", text)
        show_warning(text)

    # -- display ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show the annotation on the current frame: layers, readout and labels."""
        self.edits.flush_paint()
        if self.session is not None and self.marks is not None:
            self._shown_frame = self.current_frame()
            self.marks.show(self.session.annotation, self._shown_frame)
            self.proposals.show(self._shown_frame)
        self._update_panel()

    def _update_panel(self) -> None:
        session = self.session
        if session is None or self.image is None:
            self.panel.clear()
            return
        frame = self.current_frame()
        version = "not saved yet" if session.base_version is None else f"version {session.base_version}"
        unsaved = " · UNSAVED CHANGES" if session.dirty else ""
        self.panel.show_state(
            session.annotation,
            frame,
            self.calibration,
            self._frame_times_ms,
            frame_readout(session.annotation, self.calibration, frame),
            version + unsaved,
            self.proposals.readout(self.calibration, frame),
        )


__all__ = ["ProcedureReviewWidget"]
