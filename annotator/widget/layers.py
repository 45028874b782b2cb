"""napari layers showing one frame of a :class:`~archive.review.ClipAnnotation`.

The annotation is the single source of truth; these layers are a view of it
on the current frame. They are 2D (rows, cols) with the clip layer's scale in
mm, so napari shows them on top of whichever frame the time slider selects;
:meth:`MarkLayers.show` refills them from the annotation whenever the frame
or the annotation changes, and the ``read_…`` methods turn what the reviewer
drew back into marks. A layer is rewritten only when it would change: when
the marks to show differ from the ones last written, or the layer no longer
holds what was written (the reviewer edited it). Stepping through frames
without marks therefore costs the layers nothing (rewriting a Labels layer
re-uploads its whole texture).

=====================  =======  ===============================================
layer                  type     holds
=====================  =======  ===============================================
``needle``             Shapes   the in-plane needle: one path, entry to tip
``needle (out-of-plane)`` Points the out-of-plane needle: one dot (its tip)
``target``             Points   the target: one point
``spread``             Labels   injectate spread (label 1)
``danger``             Labels   danger structures, label ``i + 1`` = class ``i``
=====================  =======  ===============================================

Keyframes are drawn solid and bright, carried marks (interpolated or held,
:mod:`archive.review.temporal`) thinner in orange
(:data:`KEYFRAME_COLOUR`, :data:`INTERPOLATED_COLOUR`); carried masks are
drawn fainter (:data:`CARRIED_MASK_OPACITY`).

Danger masks of different classes may overlap in the annotation, but a Labels
layer holds one class per pixel: :meth:`MarkLayers.read_danger` therefore
changes only the pixels the reviewer painted and keeps every other pixel of
every stored mask as it was.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from archive.model import NeedleView
from archive.review import ClipAnnotation, MarkKind
from archive.review.interpolate import Point

if TYPE_CHECKING:
    from napari.layers import Labels, Points, Shapes
    from napari.viewer import ViewerModel

logger = logging.getLogger(__name__)

NEEDLE_LAYER = "needle"
NEEDLE_DOT_LAYER = "needle (out-of-plane)"
TARGET_LAYER = "target"
SPREAD_LAYER = "spread"
DANGER_LAYER = "danger"

#: Colour of marks stored on the current frame.
KEYFRAME_COLOUR = "#ffd60a"
#: Colour of marks interpolated between keyframes.
INTERPOLATED_COLOUR = "#ff8c00"
TARGET_COLOUR = "#39ff14"
#: Opacity of masks painted on the current frame, and of masks carried from other frames.
KEYFRAME_MASK_OPACITY = 0.45
CARRIED_MASK_OPACITY = 0.25
SPREAD_COLOUR = "#1e90ff"
#: Colours of danger classes by position in the class list (cycled).
DANGER_COLOURS = ("#ff2d55", "#bf5af2", "#ff9f0a", "#ff375f", "#64d2ff", "#ffd6a5")

#: Line width of a keyframe needle and of an interpolated one, in pixels of the clip.
KEYFRAME_WIDTH_PX = 3.0
INTERPOLATED_WIDTH_PX = 1.5
#: Diameter of target and out-of-plane needle points, in pixels of the clip.
POINT_SIZE_PX = 9.0


def _labels_colormap(colours: Mapping[int, str]) -> Any:
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[int | None, str] = {None: "transparent", 0: "transparent"}
    for label, colour in colours.items():
        color_dict[label] = colour
    return DirectLabelColormap(color_dict=color_dict)


class MarkLayers:
    """The working layers of one clip in a viewer.

    Parameters
    ----------
    viewer : napari.viewer.ViewerModel
        The viewer (a :class:`napari.Viewer` in the widget).
    frame_shape : tuple of int
        ``(rows, cols)`` of the clip.
    scale : tuple of float
        ``(row, col)`` scale of the clip layer (mm per pixel, or 1 when uncalibrated).
    danger_classes : sequence of str
        Danger class names; label ``i + 1`` of the danger layer is class ``i``.
        Classes met in an annotation that are not listed are appended.
    units : tuple of str, optional
        Units of the scale (the clip layer's; ``"pixel"`` when uncalibrated).
    """

    def __init__(
        self,
        viewer: ViewerModel,
        frame_shape: tuple[int, int],
        scale: tuple[float, float],
        danger_classes: Sequence[str],
        *,
        units: tuple[str, str] = ("mm", "mm"),
    ) -> None:
        self.viewer = viewer
        self.frame_shape = frame_shape
        self.danger_classes: list[str] = [c.strip().lower() for c in danger_classes]
        self._syncing = False
        self._danger_shown = np.zeros(frame_shape, dtype=np.uint8)
        # Per layer group: (the marks last written, a copy of the layer data written).
        self._written: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
        self.spread: Labels = viewer.add_labels(
            np.zeros(frame_shape, dtype=np.uint8),
            name=SPREAD_LAYER,
            units=units,
            scale=scale,
            opacity=KEYFRAME_MASK_OPACITY,
            colormap=_labels_colormap({1: SPREAD_COLOUR}),
        )
        self.danger: Labels = viewer.add_labels(
            np.zeros(frame_shape, dtype=np.uint8),
            name=DANGER_LAYER,
            units=units,
            scale=scale,
            opacity=KEYFRAME_MASK_OPACITY,
        )
        self._update_danger_colours()
        self.needle: Shapes = viewer.add_shapes(
            ndim=2,
            name=NEEDLE_LAYER,
            units=units,
            scale=scale,
            edge_width=KEYFRAME_WIDTH_PX,
            edge_color=KEYFRAME_COLOUR,
            face_color="transparent",
        )
        self.needle_dot: Points = viewer.add_points(
            ndim=2,
            name=NEEDLE_DOT_LAYER,
            units=units,
            scale=scale,
            size=POINT_SIZE_PX,
            face_color=KEYFRAME_COLOUR,
            border_color="black",
        )
        self.target: Points = viewer.add_points(
            ndim=2,
            name=TARGET_LAYER,
            units=units,
            scale=scale,
            size=POINT_SIZE_PX,
            symbol="cross",
            face_color=TARGET_COLOUR,
            border_color="black",
        )

    @property
    def all(self) -> tuple[Any, ...]:
        """Every working layer, bottom to top."""
        return (self.spread, self.danger, self.needle, self.needle_dot, self.target)

    @property
    def syncing(self) -> bool:
        """True while :meth:`show` writes the layers (their events are not edits)."""
        return self._syncing

    @contextlib.contextmanager
    def _sync(self) -> Iterator[None]:
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def danger_label(self, class_name: str) -> int:
        """The danger layer's label of a class, adding the class if new."""
        cleaned = class_name.strip().lower()
        if cleaned not in self.danger_classes:
            self.danger_classes.append(cleaned)
            self._update_danger_colours()
        return self.danger_classes.index(cleaned) + 1

    def _update_danger_colours(self) -> None:
        colours = {i + 1: DANGER_COLOURS[i % len(DANGER_COLOURS)] for i in range(len(self.danger_classes))}
        self.danger.colormap = _labels_colormap(colours)

    # -- annotation -> layers ---------------------------------------------------------------

    def show(self, annotation: ClipAnnotation, frame: int) -> None:
        """Fill the layers with the marks of ``frame`` (keyframes or interpolated).

        Parameters
        ----------
        annotation : ClipAnnotation
            The annotation to show.
        frame : int
            0-based frame index.
        """
        needle = (annotation.needle_at(frame), annotation.mark_state(MarkKind.NEEDLE, frame))
        target = (annotation.target_at(frame), annotation.mark_state(MarkKind.TARGET, frame))
        masks = (
            annotation.spread_at(frame),
            annotation.mark_state(MarkKind.SPREAD, frame),
            *sorted(annotation.danger_at(frame).items()),
            annotation.mark_state(MarkKind.DANGER, frame),
        )
        groups = (
            ("needle", needle, self._needle_data, self._show_needle),
            ("target", target, self._target_data, self._show_target),
            ("masks", masks, self._mask_data, self._show_masks),
        )
        with self._sync():
            for group, marks, data_of, write in groups:
                if not self._still_written(group, marks, data_of()):
                    write(annotation, frame)
                    # A copy: painting changes a Labels layer's array in place.
                    self._written[group] = (marks, tuple(np.array(item) for item in data_of()))

    def _still_written(self, group: str, marks: tuple[Any, ...], data: tuple[Any, ...]) -> bool:
        """Whether ``group``'s layers show ``marks`` already and hold what was written to them."""
        written = self._written.get(group)
        if written is None:
            return False
        written_marks, written_data = written
        return _same_items(written_marks, marks) and _same_items(written_data, data, arrays_by_value=True)

    def _needle_data(self) -> tuple[Any, ...]:
        paths = tuple(np.array(path, dtype=np.float64) for path in self.needle.data)
        return (*paths, np.array(self.needle_dot.data, dtype=np.float64))

    def _target_data(self) -> tuple[Any, ...]:
        return (np.array(self.target.data, dtype=np.float64),)

    def _mask_data(self) -> tuple[Any, ...]:
        return (np.asarray(self.spread.data), np.asarray(self.danger.data))

    def _show_needle(self, annotation: ClipAnnotation, frame: int) -> None:
        mark = annotation.needle_at(frame)
        interpolated = annotation.is_carried(MarkKind.NEEDLE, frame)
        colour = INTERPOLATED_COLOUR if interpolated else KEYFRAME_COLOUR
        self.needle.data = []
        self.needle_dot.data = np.empty((0, 2))
        if mark is None:
            return
        if mark.view is NeedleView.IN_PLANE:
            width = INTERPOLATED_WIDTH_PX if interpolated else KEYFRAME_WIDTH_PX
            self.needle.add_paths([np.asarray(mark.points)], edge_color=colour, edge_width=width)
            self.needle.current_edge_color = KEYFRAME_COLOUR
            self.needle.current_edge_width = KEYFRAME_WIDTH_PX
        else:
            self.needle_dot.add([mark.tip])
            self.needle_dot.selected_data = set()
            self.needle_dot.face_color = [colour]
            self.needle_dot.current_face_color = KEYFRAME_COLOUR

    def _show_target(self, annotation: ClipAnnotation, frame: int) -> None:
        mark = annotation.target_at(frame)
        self.target.data = np.empty((0, 2))
        if mark is None:
            return
        interpolated = annotation.is_carried(MarkKind.TARGET, frame)
        self.target.add([mark.point])
        # napari selects an added point, and the current colour applies to the selection.
        self.target.selected_data = set()
        self.target.face_color = [INTERPOLATED_COLOUR if interpolated else TARGET_COLOUR]
        self.target.current_face_color = TARGET_COLOUR

    def _show_masks(self, annotation: ClipAnnotation, frame: int) -> None:
        spread = annotation.spread_at(frame)
        self.spread.data = np.zeros(self.frame_shape, np.uint8) if spread is None else spread.astype(np.uint8)
        danger = np.zeros(self.frame_shape, dtype=np.uint8)
        for name, mask in annotation.danger_at(frame).items():
            danger[mask] = self.danger_label(name)
        self._danger_shown = danger.copy()
        self.danger.data = danger
        for layer, kind in ((self.spread, MarkKind.SPREAD), (self.danger, MarkKind.DANGER)):
            carried = annotation.is_carried(kind, frame)
            layer.opacity = CARRIED_MASK_OPACITY if carried else KEYFRAME_MASK_OPACITY

    # -- layers -> marks --------------------------------------------------------------------

    def read_needle_path(self) -> list[Point] | None:
        """The last path drawn in the needle layer as ``(row, col)`` pixels, or ``None``."""
        if not len(self.needle.data):
            return None
        vertices = np.asarray(self.needle.data[-1], dtype=np.float64)
        return [(float(r), float(c)) for r, c in vertices]

    def read_needle_dot(self) -> Point | None:
        """The last point of the out-of-plane needle layer, or ``None``."""
        return _last_point(self.needle_dot)

    def read_target(self) -> Point | None:
        """The last point of the target layer, or ``None``."""
        return _last_point(self.target)

    def read_spread(self) -> NDArray[np.bool_]:
        """The spread layer as a mask, shape (rows, cols), bool."""
        mask: NDArray[np.bool_] = np.asarray(self.spread.data) != 0
        return mask

    def read_danger(self, stored: Mapping[str, NDArray[np.bool_]]) -> dict[str, NDArray[np.bool_]]:
        """The danger masks after the reviewer's painting on the shown frame.

        Parameters
        ----------
        stored : mapping of str to ndarray of shape (rows, cols), bool
            The frame's masks as stored before the painting.

        Returns
        -------
        dict of str to ndarray of shape (rows, cols), bool
            For every class stored or painted: the stored mask with the
            painted pixels replaced by what the layer now holds. Pixels the
            reviewer did not touch keep their stored value (overlaps survive).
        """
        data = np.asarray(self.danger.data)
        changed = data != self._danger_shown
        masks: dict[str, NDArray[np.bool_]] = {}
        painted = {int(v) for v in np.unique(data[changed]) if v != 0}
        names = set(stored) | {self.danger_classes[v - 1] for v in painted if v <= len(self.danger_classes)}
        for name in sorted(names):
            label = self.danger_label(name)
            before = stored.get(name, np.zeros(self.frame_shape, dtype=bool))
            masks[name] = np.where(changed, data == label, before)
        self._danger_shown = data.copy()
        return masks


def _same_items(a: tuple[Any, ...], b: tuple[Any, ...], *, arrays_by_value: bool = False) -> bool:
    """Item-wise equality; arrays compare by identity (annotation masks are immutable) or by value."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            same = np.array_equal(x, y) if arrays_by_value else x is y
        elif isinstance(x, tuple) and isinstance(y, tuple):
            same = _same_items(x, y, arrays_by_value=arrays_by_value)
        else:
            same = bool(x == y)
        if not same:
            return False
    return True


def _last_point(layer: Points) -> Point | None:
    data = np.asarray(layer.data, dtype=np.float64)
    if not len(data):
        return None
    return (float(data[-1][0]), float(data[-1][1]))
