"""Automatic proposals in the review widget: run in the background, draw, accept or reject.

:class:`ProposalReview` owns the proposal part of the "Procedure review"
widget: the *Propose* action runs :meth:`archive.review.proposals.ProposalStore.run`
in a napari :func:`~napari.qt.threading.thread_worker` worker
(:func:`~napari.qt.threading.create_worker`; a progress bar, a
Cancel button; the clip's injection start, when the reviewer has marked it,
is handed to the detector), and the stored proposal of the open clip is drawn
in its own layers and colour (:data:`PROPOSAL_COLOUR`, :data:`PROPOSAL_SPREAD_COLOUR`),
under the reviewer's working layers, on the frames where it proposes
something and the reviewer has not yet decided.

Accepting a frame, a range or all frames copies the proposed needle and
spread into the reviewer's annotation as keyframes
(:func:`archive.review.proposals.accept_proposal`); the edit is unsaved until
the reviewer saves, like any other. Rejecting hides the proposal on that
frame for this session: nothing is stored, since only the reviewer's own
annotation counts and the proposal stays as computed. A reviewer's
correction after accepting is an ordinary edit of their keyframe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy import QtCore
from qtpy.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
)

from annotator.widget.readout import FrameReadout, proposed_readout
from archive.calibration import Calibration
from archive.errors import ArchiveError
from archive.model import ClipEvent, NeedleView
from archive.review import ClipAnnotation

if TYPE_CHECKING:
    from napari.layers import Labels, Points, Shapes
    from napari.qt.threading import FunctionWorker
    from napari.viewer import Viewer

    from annotator.widget.widget import ProcedureReviewWidget
    from archive.review.proposals import ProposalRun

logger = logging.getLogger(__name__)

PROPOSAL_NEEDLE_LAYER = "proposal (needle)"
PROPOSAL_DOT_LAYER = "proposal (out-of-plane)"
PROPOSAL_SPREAD_LAYER = "proposal (spread)"
#: Colour of the proposed needle (distinct from the reviewer's yellow and orange).
PROPOSAL_COLOUR = "#00e5ff"
#: Colour of the proposed spread (distinct from the reviewer's blue).
PROPOSAL_SPREAD_COLOUR = "#ff40ff"
PROPOSAL_WIDTH_PX = 2.0
PROPOSAL_MASK_OPACITY = 0.35
#: Approach choices of the panel; the first uses the clip's indexed approach.
APPROACH_CHOICES = ("indexed approach", NeedleView.IN_PLANE.value, NeedleView.OUT_OF_PLANE.value)


class ProposalLayers:
    """The layers that draw one frame of a proposal, below the reviewer's working layers.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    frame_shape, scale, units
        As the clip layer's (see :class:`annotator.widget.layers.MarkLayers`).
    below : napari layer
        The proposal layers are put directly above this layer (the clip image).
    """

    def __init__(
        self,
        viewer: Viewer,
        frame_shape: tuple[int, int],
        scale: tuple[float, float],
        units: tuple[str, str],
        below: Any,
    ) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        self.viewer = viewer
        self.frame_shape = frame_shape
        self._shown: tuple[Any, Any] | None = None  # (needle mark, mask object) last written
        colours = DirectLabelColormap(
            color_dict={None: "transparent", 0: "transparent", 1: PROPOSAL_SPREAD_COLOUR}
        )
        self.spread: Labels = viewer.add_labels(
            np.zeros(frame_shape, dtype=np.uint8),
            name=PROPOSAL_SPREAD_LAYER,
            units=units,
            scale=scale,
            opacity=PROPOSAL_MASK_OPACITY,
            colormap=colours,
        )
        self.needle: Shapes = viewer.add_shapes(
            ndim=2,
            name=PROPOSAL_NEEDLE_LAYER,
            units=units,
            scale=scale,
            edge_width=PROPOSAL_WIDTH_PX,
            edge_color=PROPOSAL_COLOUR,
            face_color="transparent",
        )
        self.dot: Points = viewer.add_points(
            ndim=2,
            name=PROPOSAL_DOT_LAYER,
            units=units,
            scale=scale,
            size=9.0,
            symbol="ring",
            face_color=PROPOSAL_COLOUR,
            border_color=PROPOSAL_COLOUR,
        )
        for layer in self.all:
            layer.editable = False
            viewer.layers.move(viewer.layers.index(layer), viewer.layers.index(below) + 1)

    @property
    def all(self) -> tuple[Any, ...]:
        """The proposal layers."""
        return (self.spread, self.needle, self.dot)

    def show(self, proposal: ClipAnnotation | None, frame: int) -> None:
        """Draw ``proposal``'s keyframes of ``frame`` (nothing when ``None``).

        The layers are rewritten only when what they show changes (rewriting a
        Labels layer re-uploads its texture), so stepping through frames
        without a proposal costs them nothing.
        """
        mark = None if proposal is None else proposal.needle.get(frame)
        mask = None if proposal is None else proposal.spread.get(frame)
        if self._shown is not None and self._shown[0] == mark and self._shown[1] is mask:
            return
        self._shown = (mark, mask)
        self.needle.data = []
        self.dot.data = np.empty((0, 2))
        if mark is not None and mark.view is NeedleView.IN_PLANE:
            self.needle.add_paths([np.asarray(mark.points)], edge_color=PROPOSAL_COLOUR)
        elif mark is not None:
            self.dot.add([mark.tip])
            self.dot.selected_data = set()
        self.spread.data = (
            np.zeros(self.frame_shape, np.uint8) if mask is None else np.asarray(mask, dtype=np.uint8)
        )

    def remove(self) -> None:
        """Take the layers out of the viewer."""
        for layer in self.all:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)


class _ProgressRelay(QtCore.QObject):
    """Carries ``progress(done, total)`` from the worker thread to the panel (queued signal)."""

    changed = QtCore.Signal(int, int)  # type: ignore[attr-defined]  # qtpy re-exports it implicitly


class ProposalPanel(QGroupBox):
    """Buttons, range, approach and progress of the proposals (in the Review tab).

    Each button's object name is its action's name (``propose``,
    ``cancel_proposal``, ``accept_proposal_frame``, ``reject_proposal_frame``,
    ``accept_proposal_range``, ``accept_proposal_all``, ``reject_proposal_all``).
    """

    def __init__(self, review: ProposalReview) -> None:
        super().__init__("Automatic proposal")
        self.setObjectName("proposals")
        grid = QGridLayout(self)
        self.buttons: dict[str, QPushButton] = {}
        self.approach = QComboBox()
        self.approach.setObjectName("proposal_approach")
        self.approach.addItems(list(APPROACH_CHOICES))
        grid.addWidget(self.approach, 0, 0)
        for column, (name, text) in enumerate((("propose", "Propose"), ("cancel_proposal", "Cancel")), 1):
            grid.addWidget(self._button(name, text, getattr(review, name)), 0, column)
        self.progress = QProgressBar()
        self.progress.setObjectName("proposal_progress")
        grid.addWidget(self.progress, 1, 0, 1, 3)
        grid.addWidget(self._button("accept_proposal_frame", "Accept frame", review.accept_frame), 2, 0)
        grid.addWidget(self._button("reject_proposal_frame", "Reject frame", review.reject_frame), 2, 1)
        grid.addWidget(self._button("accept_proposal_all", "Accept all", review.accept_all), 3, 0)
        grid.addWidget(self._button("reject_proposal_all", "Reject all", review.reject_all), 3, 1)
        self.first = QSpinBox()
        self.first.setObjectName("proposal_first")
        self.last = QSpinBox()
        self.last.setObjectName("proposal_last")
        for box in (self.first, self.last):
            box.setMinimum(1)
        grid.addWidget(self.first, 4, 0)
        grid.addWidget(self.last, 4, 1)
        grid.addWidget(
            self._button(
                "accept_proposal_range",
                "Accept range",
                lambda: review.accept_range(self.first.value(), self.last.value()),
            ),
            4,
            2,
        )
        self.state = QLabel("")
        self.state.setObjectName("proposal_state")
        self.state.setWordWrap(True)
        grid.addWidget(self.state, 5, 0, 1, 3)
        self.set_running(False)

    def _button(self, name: str, text: str, action: Any) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.clicked.connect(lambda _checked=False: action())
        self.buttons[name] = button
        return button

    def set_running(self, running: bool) -> None:
        """Enable Cancel only while a proposal runs, Propose only while none does."""
        self.buttons["propose"].setEnabled(not running)
        self.buttons["cancel_proposal"].setEnabled(running)

    def set_frames(self, n_frames: int) -> None:
        """Limit the range boxes to the clip's frames (1-based)."""
        for box, value in ((self.first, 1), (self.last, n_frames)):
            box.setMaximum(max(1, n_frames))
            box.setValue(value)


class ProposalReview:
    """Run, show, accept and reject the automatic proposal of the widget's open clip.

    Parameters
    ----------
    host : ProcedureReviewWidget
        The review widget (its session, viewer, archive and messages).

    Attributes
    ----------
    proposal : ClipAnnotation or None
        The open clip's stored proposal.
    worker : FunctionWorker or None
        The running proposal, if any.
    """

    def __init__(self, host: ProcedureReviewWidget) -> None:
        self.host = host
        self.panel = ProposalPanel(self)
        self.proposal: ClipAnnotation | None = None
        self.proposal_version: int | None = None
        self.decided: set[int] = set()
        self.layers: ProposalLayers | None = None
        self.worker: FunctionWorker[Any] | None = None
        self._cancel = threading.Event()
        self._relay = _ProgressRelay()
        self._relay.changed.connect(self._on_progress)

    # -- the open clip ------------------------------------------------------------------------

    def open(
        self, image: Any, frame_shape: tuple[int, int], scale: tuple[float, float], units: tuple[str, str]
    ) -> None:
        """Add the proposal layers for a newly opened clip and load its stored proposal."""
        self.close()
        self.layers = ProposalLayers(self.host.viewer, frame_shape, scale, units, below=image)
        session = self.host.session
        self.panel.set_frames(0 if session is None else session.n_frames)
        self.reload()

    def close(self) -> None:
        """Cancel a running proposal and remove the layers (the clip is closing)."""
        self.cancel_proposal()
        if self.layers is not None:
            self.layers.remove()
        self.layers, self.proposal, self.proposal_version = None, None, None
        self.decided.clear()
        self.panel.state.setText("")

    def reload(self) -> None:
        """Load the open clip's latest stored proposal (decisions of this session are forgotten)."""
        session = self.host.session
        loaded = None if session is None else self.host.archive.proposals.load(session.sop_instance_uid)
        self.proposal = None if loaded is None else loaded.annotation
        self.proposal_version = None if loaded is None else loaded.version
        self.decided.clear()
        self._describe()

    def _frames(self) -> set[int]:
        """0-based frames where the proposal has a needle or a spread."""
        if self.proposal is None:
            return set()
        return set(self.proposal.needle) | set(self.proposal.spread)

    def pending(self) -> tuple[int, ...]:
        """0-based frames with a proposal not yet accepted or rejected in this session."""
        return tuple(sorted(self._frames() - self.decided))

    def _describe(self) -> None:
        if self.proposal is None:
            self.panel.state.setText("no proposal for this clip: press Propose")
            return
        needle, spread = len(self.proposal.needle), len(self.proposal.spread)
        self.panel.state.setText(
            f"proposal version {self.proposal_version}: needle on {needle} frame(s), spread on {spread}; "
            f"{len(self.pending())} frame(s) not yet accepted or rejected"
        )

    def show(self, frame: int) -> None:
        """Draw the proposal of ``frame`` unless the reviewer decided it in this session."""
        if self.layers is not None:
            self.layers.show(self.proposal if frame not in self.decided else None, frame)

    @property
    def drawn_layers(self) -> tuple[Any, ...]:
        """The proposal layers of the open clip (none when no clip is open)."""
        return () if self.layers is None else self.layers.all

    def shown_on(self, frame: int) -> bool:
        """Whether a proposal is drawn on ``frame``."""
        return self.proposal is not None and frame in self._frames() and frame not in self.decided

    def readout(self, calibration: Calibration | None, frame: int) -> FrameReadout | None:
        """The measurements the proposal gives on ``frame`` (with the reviewer's target and danger).

        ``None`` when no proposal is drawn there.
        """
        session = self.host.session
        if session is None or self.proposal is None or not self.shown_on(frame):
            return None
        return proposed_readout(session.annotation, self.proposal, calibration, frame)

    # -- running ------------------------------------------------------------------------------

    def propose(self) -> None:
        """Compute a proposal for the open clip in the background and store it."""
        from napari.qt.threading import create_worker

        session = self.host.session
        if session is None:
            self.host._say("open a clip first")
            return
        if self.worker is not None:
            self.host._say("a proposal is already running")
            return
        choice = self.panel.approach.currentText()
        approach = None if choice == APPROACH_CHOICES[0] else choice
        start = session.annotation.events.get(ClipEvent.INJECTION_START)
        injection_start = None if start is None else start + 1
        proposals, uid, who = self.host.archive.proposals, session.sop_instance_uid, session.user
        self._cancel.clear()
        relay = self._relay
        cancel = self._cancel

        def work() -> ProposalRun:
            return proposals.run(
                uid,
                requested_by=who,
                approach=approach,
                injection_start=injection_start,
                progress=relay.changed.emit,
                cancelled=cancel.is_set,
            )

        # napari's thread_worker machinery (the decorator's own factory): a QThreadPool worker
        handlers = {"returned": self._on_done, "errored": self._on_error, "finished": self._on_finished}
        worker = create_worker(work, _connect=handlers, _start_thread=False)
        self.worker = worker
        self.panel.progress.setRange(0, session.n_frames)
        self.panel.progress.setValue(0)
        self.panel.set_running(True)
        self.panel.state.setText("proposing…")
        worker.start()

    def cancel_proposal(self) -> None:
        """Stop the running proposal (nothing is stored)."""
        if self.worker is not None:
            self._cancel.set()

    def _on_progress(self, done: int, total: int) -> None:
        self.panel.progress.setRange(0, max(1, total))
        self.panel.progress.setValue(done)

    def _on_done(self, run: ProposalRun) -> None:
        session = self.host.session
        if session is None or session.sop_instance_uid != run.sop_instance_uid:
            return  # the clip was closed meanwhile: the proposal is stored, nothing to draw
        self.reload()
        self.host._say(f"proposal saved as version {run.saved.version}")
        self.host.refresh()

    def _on_error(self, exc: BaseException) -> None:
        from archive.analysis.proposals import ProposalCancelled

        if isinstance(exc, ProposalCancelled):
            self.host._say("proposal cancelled: nothing was stored")
        elif isinstance(exc, ArchiveError):
            self.host._warn(f"no proposal: {exc}")
        else:
            logger.error("proposal failed", exc_info=exc)
            self.host._warn(f"no proposal: {type(exc).__name__}: {exc}")
        self._describe()

    def _on_finished(self) -> None:
        self.worker = None
        self.panel.set_running(False)

    # -- deciding -----------------------------------------------------------------------------

    def _accept(self, frames: Iterable[int]) -> None:
        """Accept the proposal on 0-based ``frames`` into the reviewer's annotation."""
        from archive.review.proposals import accept_proposal

        proposal = self.proposal
        if proposal is None:
            self.host._say("no proposal to accept: press Propose first")
            return
        chosen = sorted(set(frames) & self._frames())
        if not chosen:
            self.host._say("no proposal on the chosen frame(s)")
            return
        self.host._apply(lambda a: accept_proposal(a, proposal, [f + 1 for f in chosen])[0])
        session = self.host.session
        if session is not None and all(
            session.annotation.needle.get(f) == proposal.needle.get(f) for f in chosen if f in proposal.needle
        ):
            self.decided.update(chosen)
            self.host._say(f"accepted the proposal on {len(chosen)} frame(s): save to keep it")
        self._describe()
        self.host.refresh()

    def _reject(self, frames: Iterable[int]) -> None:
        self.decided.update(set(frames) & self._frames())
        self._describe()
        self.host.refresh()

    def accept_frame(self) -> None:
        """Accept the proposal on the current frame."""
        self._accept([self.host.current_frame()])

    def reject_frame(self) -> None:
        """Hide the proposal on the current frame (nothing is copied)."""
        self._reject([self.host.current_frame()])

    def accept_range(self, first: int, last: int) -> None:
        """Accept the proposal on frames ``first`` .. ``last`` (1-based, inclusive)."""
        self._accept(range(first - 1, last))

    def accept_all(self) -> None:
        """Accept the proposal on every frame not rejected."""
        self._accept(self.pending())

    def reject_all(self) -> None:
        """Hide the proposal on every frame."""
        self._reject(self._frames())
