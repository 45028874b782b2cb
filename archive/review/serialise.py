"""Canonical JSON serialisation of a :class:`~archive.review.clip.ClipAnnotation`.

The format is described in ``docs/annotation-format.md``. :func:`to_json`
returns plain JSON types; :func:`canonical_json` renders them with sorted keys
and no white space, so the same annotation always gives the same bytes and
:func:`content_sha256` can tell whether a stored version is stale.

Masks are stored as ``{"shape": [rows, cols], "encoding": "packbits-zlib-base64",
"data": ...}``: the row-major bool array packed eight pixels a byte by
``numpy.packbits`` (big bit order), compressed by zlib at level 9, then base64.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from archive.errors import AnnotationError
from archive.model import ClipEvent, NeedleView, ReviewStatus
from archive.review.clip import ClipAnnotation
from archive.review.marks import AdverseEvent, NeedleMark, ReviewComment, TargetMark
from archive.review.maskcodec import pack_mask, unpack_mask

#: Version of the serialised format written by :func:`to_json`.
FORMAT_VERSION = 1
#: Name of the mask encoding.
MASK_ENCODING = "packbits-zlib-base64"

_T = TypeVar("_T")


def encode_mask(mask: NDArray[np.bool_]) -> dict[str, Any]:
    """Encode a 2D boolean mask as a JSON object.

    Parameters
    ----------
    mask : ndarray of shape (rows, cols), bool
        The mask to encode.

    Returns
    -------
    dict
        ``{"shape": [rows, cols], "encoding": MASK_ENCODING, "data": str}``.
    """
    data = pack_mask(mask)
    return {"shape": [int(mask.shape[0]), int(mask.shape[1])], "encoding": MASK_ENCODING, "data": data}


def decode_mask(obj: Mapping[str, Any]) -> NDArray[np.bool_]:
    """Decode a mask written by :func:`encode_mask`.

    Parameters
    ----------
    obj : mapping
        ``{"shape": [rows, cols], "encoding": ..., "data": ...}``.

    Returns
    -------
    ndarray of shape (rows, cols), bool

    Raises
    ------
    AnnotationError
        If the encoding is unknown or the data do not decode to the shape.
    """
    if obj.get("encoding") != MASK_ENCODING:
        raise AnnotationError(
            f"mask: expected encoding {MASK_ENCODING!r}, but got {obj.get('encoding')!r}; "
            "the file was written by another tool or a newer usarchive"
        )
    rows, cols = (int(v) for v in obj["shape"])
    try:
        return unpack_mask(obj["data"], (rows, cols))
    except ValueError as exc:
        raise AnnotationError(f"mask: {exc}") from exc


def _points(points: tuple[tuple[float, float], ...]) -> list[list[float]]:
    return [[float(r), float(c)] for r, c in points]


def to_json(annotation: ClipAnnotation) -> dict[str, Any]:
    """The annotation as a JSON-ready dict (format ``FORMAT_VERSION``).

    Parameters
    ----------
    annotation : ClipAnnotation
        The annotation to serialise.

    Returns
    -------
    dict
        Only ``dict``, ``list``, ``str``, ``int``, ``float`` and ``None``; lists
        are in frame order (then class name, for danger masks).
    """
    a = annotation
    return {
        "format_version": FORMAT_VERSION,
        "sop_instance_uid": a.sop_instance_uid,
        "reviewer": a.reviewer,
        "n_frames": a.n_frames,
        "frame_shape": list(a.frame_shape),
        "needle": [
            {"frame": f, "view": m.view.value, "points": _points(m.points)} for f, m in a.needle.items()
        ],
        "target": [
            {"frame": f, "name": m.name, "point": [m.point[0], m.point[1]]} for f, m in a.target.items()
        ],
        "spread": [{"frame": f, "mask": encode_mask(m)} for f, m in a.spread.items()],
        "danger": [
            {"frame": f, "class": name, "mask": encode_mask(mask)}
            for f, by_class in a.danger.items()
            for name, mask in by_class.items()
        ],
        "events": {event.value: frame for event, frame in a.events.items()},
        "adverse_events": [{"frame": e.frame, "note": e.note} for e in a.adverse_events],
        "status": a.status.value,
        "comments": [{"author": c.author, "text": c.text, "frame": c.frame} for c in a.comments],
    }


def canonical_json(annotation: ClipAnnotation) -> str:
    """The annotation as canonical JSON text: sorted keys, no white space, UTF-8 safe."""
    return json.dumps(
        to_json(annotation), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_sha256(annotation: ClipAnnotation) -> str:
    """Hex SHA-256 of :func:`canonical_json` encoded as UTF-8.

    Two annotations have the same hash exactly when they serialise the same,
    so a save can be refused if the stored hash is not the one it started from.
    """
    return hashlib.sha256(canonical_json(annotation).encode("utf-8")).hexdigest()


def _field(obj: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
    if not isinstance(obj, Mapping) or key not in obj:
        raise AnnotationError(f"annotation JSON: expected key {key!r} in {where}, but it is missing")
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise AnnotationError(
            f"annotation JSON: expected {where}.{key} to be {kind.__name__}, "
            f"but got {type(value).__name__} {value!r}"
        )
    return value  # type: ignore[no-any-return]


def _items(obj: Mapping[str, Any], key: str, build: Callable[[Mapping[str, Any], str], _T]) -> list[_T]:
    entries = _field(obj, key, list, "annotation")
    return [build(entry, f"{key}[{i}]") for i, entry in enumerate(entries)]


def _point(value: Any, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2):
        raise AnnotationError(f"annotation JSON: expected {where} to be [row, col], but got {value!r}")
    pair = {"row": value[0], "col": value[1]}
    return (_field(pair, "row", float, where), _field(pair, "col", float, where))


def from_json(obj: Mapping[str, Any]) -> ClipAnnotation:
    """Rebuild an annotation from :func:`to_json` output (or the parsed JSON text).

    Parameters
    ----------
    obj : mapping
        A dict with ``format_version == FORMAT_VERSION``.

    Returns
    -------
    ClipAnnotation
        Equal to the annotation that was serialised.

    Raises
    ------
    AnnotationError
        If the version is not supported, a key is missing or of the wrong type,
        a coded value (view, event, status) is unknown, or the content is
        invalid (marks outside the clip, events out of order).
    """
    try:
        return _from_json(obj)
    except AnnotationError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise AnnotationError(f"annotation JSON: invalid content ({exc}); it cannot be loaded") from exc


def _from_json(obj: Mapping[str, Any]) -> ClipAnnotation:
    version = _field(obj, "format_version", int, "annotation")
    if version != FORMAT_VERSION:
        raise AnnotationError(
            f"annotation JSON: expected format_version {FORMAT_VERSION}, but got {version}; "
            "it was written by a different usarchive version"
        )

    def needle(e: Mapping[str, Any], where: str) -> tuple[int, NeedleMark]:
        points = tuple(_point(p, f"{where}.points") for p in _field(e, "points", list, where))
        view = NeedleView.parse(_field(e, "view", str, where))
        return _field(e, "frame", int, where), NeedleMark(points, view)

    def target(e: Mapping[str, Any], where: str) -> tuple[int, TargetMark]:
        mark = TargetMark(_point(e.get("point"), f"{where}.point"), _field(e, "name", str, where))
        return _field(e, "frame", int, where), mark

    def spread(e: Mapping[str, Any], where: str) -> tuple[int, NDArray[np.bool_]]:
        return _field(e, "frame", int, where), decode_mask(_field(e, "mask", dict, where))

    def danger(e: Mapping[str, Any], where: str) -> tuple[int, str, NDArray[np.bool_]]:
        mask = decode_mask(_field(e, "mask", dict, where))
        return _field(e, "frame", int, where), _field(e, "class", str, where), mask

    def adverse(e: Mapping[str, Any], where: str) -> AdverseEvent:
        return AdverseEvent(_field(e, "frame", int, where), _field(e, "note", str, where))

    def comment(e: Mapping[str, Any], where: str) -> ReviewComment:
        frame = e.get("frame") if isinstance(e, Mapping) else None
        if frame is not None:
            frame = _field(e, "frame", int, where)
        return ReviewComment(_field(e, "author", str, where), _field(e, "text", str, where), frame)

    danger_masks: dict[int, dict[str, NDArray[np.bool_]]] = {}
    for frame, name, mask in _items(obj, "danger", danger):
        if name in danger_masks.get(frame, {}):
            raise AnnotationError(f"annotation JSON: danger class {name!r} on frame {frame} appears twice")
        danger_masks.setdefault(frame, {})[name] = mask
    events = {
        ClipEvent.parse(name): _field(_field(obj, "events", dict, "annotation"), name, int, "events")
        for name in _field(obj, "events", dict, "annotation")
    }
    shape = _field(obj, "frame_shape", list, "annotation")
    if len(shape) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
        raise AnnotationError(f"annotation JSON: expected frame_shape [rows, cols], but got {shape!r}")
    return ClipAnnotation(
        sop_instance_uid=_field(obj, "sop_instance_uid", str, "annotation"),
        reviewer=_field(obj, "reviewer", str, "annotation"),
        n_frames=_field(obj, "n_frames", int, "annotation"),
        frame_shape=(shape[0], shape[1]),
        needle=_unique(_items(obj, "needle", needle), "needle"),
        target=_unique(_items(obj, "target", target), "target"),
        spread=_unique(_items(obj, "spread", spread), "spread"),
        danger=danger_masks,
        events=events,
        adverse_events=tuple(_items(obj, "adverse_events", adverse)),
        status=ReviewStatus.parse(_field(obj, "status", str, "annotation")),
        comments=tuple(_items(obj, "comments", comment)),
    )


def _unique(pairs: list[tuple[int, _T]], key: str) -> dict[int, _T]:
    result: dict[int, _T] = {}
    for frame, value in pairs:
        if frame in result:
            raise AnnotationError(f"annotation JSON: {key} has two entries for frame {frame}; keep one")
        result[frame] = value
    return result
