"""The marks a reviewer puts on a clip frame: needle, target, adverse events, comments.

Points are ``(row, col)`` in pixel units (floats, sub-pixel allowed), row 0 at
the top of the image where the transducer face is, so a larger row is deeper.
A point lies in a frame of shape ``(rows, cols)`` when
``-0.5 <= row <= rows - 0.5`` and ``-0.5 <= col <= cols - 0.5`` (pixel centres
at integers, the napari convention).

Needle convention: the points of a :class:`NeedleMark` are ordered from the skin
entry (or the shallowest visible part of the shaft) to the tip; the tip is the
**last** point. An in-plane needle has at least two points; an out-of-plane
needle is seen as a dot and has exactly one point, which is its tip.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from archive.errors import AnnotationError
from archive.model import NeedleView
from archive.review.interpolate import Point


class MarkKind(enum.StrEnum):
    """The kinds of per-frame marks of a clip annotation.

    ``NEEDLE`` and ``TARGET`` are keyframed and interpolated between keyframes;
    ``SPREAD`` and ``DANGER`` are masks, stored only on the frames that have
    them (their "keyframes") and never interpolated.
    """

    NEEDLE = "needle"
    TARGET = "target"
    SPREAD = "spread"
    DANGER = "danger"


#: Suggested danger-structure class names (any non-empty name is accepted).
DANGER_CLASSES: tuple[str, ...] = (
    "spinal canal",
    "laminar gap",
    "nerve root",
    "vessel",
    "foramen",
    "spinal cord",
)


def check_point(point: Sequence[float], frame_shape: tuple[int, int], what: str) -> Point:
    """Validate one ``(row, col)`` point against a frame shape.

    Parameters
    ----------
    point : sequence of two float
        The point, ``(row, col)`` in pixels.
    frame_shape : tuple of int
        ``(rows, cols)`` of the clip's frames.
    what : str
        Name used in the error message (e.g. ``"needle point 2 on frame 7"``).

    Returns
    -------
    tuple of float
        The point as a tuple of two Python floats.

    Raises
    ------
    AnnotationError
        If the point has not two finite coordinates or lies outside the frame.
    """
    if len(point) != 2:
        raise AnnotationError(f"{what}: expected a (row, col) pair, but got {point!r}")
    row, col = float(point[0]), float(point[1])
    if not (math.isfinite(row) and math.isfinite(col)):
        raise AnnotationError(f"{what}: expected finite coordinates, but got ({row}, {col})")
    rows, cols = frame_shape
    if not (-0.5 <= row <= rows - 0.5 and -0.5 <= col <= cols - 0.5):
        raise AnnotationError(
            f"{what}: expected a point inside the frame, rows -0.5..{rows - 0.5} and cols "
            f"-0.5..{cols - 0.5}, but got ({row}, {col}); mark it inside the image"
        )
    return (row, col)


@dataclass(frozen=True)
class NeedleMark:
    """The needle as seen on one frame.

    Parameters
    ----------
    points : tuple of (row, col) float points
        Ordered from skin entry to tip; the tip is the last point. In-plane:
        two or more points with no two consecutive points equal and the tip not
        shallower (smaller row) than the first point. Out-of-plane: exactly one
        point.
    view : NeedleView
        In-plane (whole shaft seen) or out-of-plane (a dot).

    Raises
    ------
    AnnotationError
        If the points do not fit the view or the ordering convention.
    """

    points: tuple[Point, ...]
    view: NeedleView = NeedleView.IN_PLANE

    def __post_init__(self) -> None:
        view = NeedleView.parse(self.view)
        points = tuple((float(p[0]), float(p[1])) for p in self.points)
        if any(not (math.isfinite(r) and math.isfinite(c)) for r, c in points):
            raise AnnotationError(f"needle: expected finite coordinates, but got {points}")
        if view is NeedleView.OUT_OF_PLANE and len(points) != 1:
            raise AnnotationError(
                f"needle: an out-of-plane needle is a dot, expected exactly 1 point, "
                f"but got {len(points)}; mark one point or use view='in-plane'"
            )
        if view is NeedleView.IN_PLANE:
            if len(points) < 2:
                raise AnnotationError(
                    f"needle: an in-plane needle is a line, expected at least 2 points "
                    f"(entry to tip), but got {len(points)}; use view='out-of-plane' for a dot"
                )
            for i in range(1, len(points)):
                if points[i] == points[i - 1]:
                    raise AnnotationError(
                        f"needle: expected distinct consecutive points, but points {i - 1} and {i} "
                        f"are both {points[i]}; remove the duplicate"
                    )
            if points[-1][0] < points[0][0]:
                raise AnnotationError(
                    f"needle: points must run from skin entry to tip (tip = last point, not "
                    f"shallower than the entry), but the last point {points[-1]} is shallower than "
                    f"the first {points[0]}; reverse the points or use NeedleMark.oriented()"
                )
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "view", view)

    @classmethod
    def oriented(cls, points: Sequence[Sequence[float]], view: NeedleView | str) -> NeedleMark:
        """Build a mark from points in either order, putting the deeper end last.

        Parameters
        ----------
        points : sequence of (row, col)
            Needle points along the shaft, in either direction.
        view : NeedleView or str
            In-plane or out-of-plane.

        Returns
        -------
        NeedleMark
            With the points reversed if the first one is deeper (greater row)
            than the last.
        """
        as_tuples = tuple((float(p[0]), float(p[1])) for p in points)
        if len(as_tuples) >= 2 and as_tuples[0][0] > as_tuples[-1][0]:
            as_tuples = as_tuples[::-1]
        return cls(as_tuples, NeedleView.parse(view))

    @property
    def tip(self) -> Point:
        """The needle tip: the last point."""
        return self.points[-1]

    @property
    def entry(self) -> Point:
        """The shallow end of the marked shaft: the first point (the tip if out-of-plane)."""
        return self.points[0]


@dataclass(frozen=True)
class TargetMark:
    """The anatomical target on one frame.

    Parameters
    ----------
    point : tuple of float
        ``(row, col)`` pixel point.
    name : str
        Anatomical name, e.g. ``"L5 SAP–TP junction"``; surrounding white space
        is removed and it must not be empty.
    """

    point: Point
    name: str

    def __post_init__(self) -> None:
        point = (float(self.point[0]), float(self.point[1]))
        if not (math.isfinite(point[0]) and math.isfinite(point[1])):
            raise AnnotationError(f"target: expected finite coordinates, but got {point}")
        name = str(self.name).strip()
        if not name:
            raise AnnotationError(
                "target: expected an anatomical name such as 'L5 SAP–TP junction', but got an empty name"
            )
        object.__setattr__(self, "point", point)
        object.__setattr__(self, "name", name)


@dataclass(frozen=True, order=True)
class AdverseEvent:
    """An adverse event at a frame, with the reviewer's note.

    Parameters
    ----------
    frame : int
        0-based frame index.
    note : str
        What happened, e.g. ``"patient reports lower-limb paraesthesia"``; must
        not be empty.
    """

    frame: int
    note: str

    def __post_init__(self) -> None:
        note = str(self.note).strip()
        if not note:
            raise AnnotationError(
                f"adverse event at frame {self.frame + 1}: expected a note saying what happened, "
                "but got an empty note"
            )
        object.__setattr__(self, "note", note)


@dataclass(frozen=True)
class ReviewComment:
    """A comment in the review of an annotation.

    Parameters
    ----------
    author : str
        Who wrote it (user name); must not be empty.
    text : str
        The comment; must not be empty.
    frame : int or None
        0-based frame the comment is about, if any.
    """

    author: str
    text: str
    frame: int | None = None

    def __post_init__(self) -> None:
        author = str(self.author).strip()
        text = str(self.text).strip()
        if not author or not text:
            raise AnnotationError(
                f"comment: expected a non-empty author and text, but got author={self.author!r}, "
                f"text={self.text!r}"
            )
        object.__setattr__(self, "author", author)
        object.__setattr__(self, "text", text)


Mask = NDArray[np.bool_]


def frozen_mask(mask: ArrayLike, frame_shape: tuple[int, int], what: str) -> Mask:
    """Return ``mask`` as a read-only bool array of ``frame_shape``, copying only if needed.

    Raises
    ------
    AnnotationError
        If the shape differs or the values are not boolean (or 0/1 integers).
    """
    reusable = (
        isinstance(mask, np.ndarray)
        and mask.dtype == np.bool_
        and not mask.flags.writeable
        and mask.base is None
        and mask.shape == frame_shape
    )
    if reusable:
        return mask  # type: ignore[return-value]
    array = np.asarray(mask)
    if array.shape != frame_shape:
        raise AnnotationError(
            f"{what}: expected a mask of the frame shape {frame_shape}, but got shape {array.shape}"
        )
    zeros_and_ones = np.issubdtype(array.dtype, np.integer) and bool(np.isin(array, (0, 1)).all())
    if array.dtype != np.bool_ and not zeros_and_ones:
        raise AnnotationError(
            f"{what}: expected a boolean mask (or integers 0/1), but got dtype {array.dtype}; "
            "threshold it first"
        )
    frozen = np.array(array, dtype=np.bool_, copy=True)
    frozen.setflags(write=False)
    return frozen


def danger_class_name(name: str) -> str:
    """A danger class name stripped and lower-cased; an :class:`AnnotationError` if empty."""
    cleaned = str(name).strip().lower()
    if not cleaned:
        raise AnnotationError(
            "danger structure: expected a class name such as 'nerve root', but got an empty name"
        )
    return cleaned
