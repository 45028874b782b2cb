"""What the export hands the research-dataset writer per clip, and the metadata table built from it.

:class:`ClipRecord` describes one de-identified clip: its frames as a callable
yielding one decoded frame at a time (so no writer ever holds a whole clip),
its calibration and timing, the procedure facts, one reviewer's annotation,
audit metrics and outcome. :func:`metadata_row` turns it into one row of the
metadata table; :data:`COLUMNS` is that table's schema, shared by the writer
and the reader so both agree on every column's kind.

Column kinds and how a missing value (``None``) is stored:

==========  ========================  =======================
kind        HDF5 type                 ``None`` stored as
==========  ========================  =======================
``str``     variable-length UTF-8     (not allowed)
``str?``    variable-length UTF-8     ``""``
``json``    variable-length UTF-8     JSON ``null``
``int``     int64                     (not allowed)
``int?``    int64                     ``-1`` (counts, frames)
``float?``  float64                   NaN
``bool``    bool                      (not allowed)
``bool?``   int8                      ``-1`` (else 0 / 1)
==========  ========================  =======================
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from archive.analysis.metrics.clip import ClipMetrics
from archive.analysis.outcomes.model import Outcome, is_effective
from archive.calibration import SPATIAL_FORMAT_2D, UltrasoundRegion
from archive.errors import ExportError
from archive.model import ProcedureType, ReviewStatus, Side, SpinalLevel, Technique, sort_levels
from archive.research.deid.pixels import keep_mask
from archive.research.export.split import Split
from archive.review import ClipAnnotation

Frame = npt.NDArray[Any]
#: Sample types a clip's frames may be exported in.
FRAME_DTYPES = ("uint8", "uint16", "int8", "int16")

#: Metric fields not exported: the original SOP Instance UID identifies the
#: source, and the reviewer has a column of its own.
_METRICS_LEFT_OUT = ("sop_instance_uid", "reviewer")
_OUTCOME_SCORES = ("vas_pre", "vas_1h", "vas_2w", "odi_pre", "odi_1h", "odi_2w")


@dataclass(frozen=True)
class Column:
    """One column of the metadata table.

    Parameters
    ----------
    name : str
        Dataset name under ``/metadata``.
    kind : str
        One of the kinds of the module table.
    description : str
        What the column holds (written as the dataset's ``description`` attribute).
    """

    name: str
    kind: str
    description: str


def _metric_kind(hint: Any) -> str:
    args = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
    args.discard(type(None))
    if args == {bool}:
        return "bool?"
    if args == {int}:
        return "int?"
    if args == {float}:
        return "float?"
    if args == {str}:
        return "str?"
    return "json"


def _metric_columns() -> tuple[Column, ...]:
    hints = typing.get_type_hints(ClipMetrics)
    return tuple(
        Column(f"metric_{name}", _metric_kind(hint), f"audit metric {name} (docs/metrics.md)")
        for name, hint in hints.items()
        if name not in _METRICS_LEFT_OUT
    )


#: Metric names exported (keys of ``ClipMetrics.to_dict()`` minus the left-out ones).
METRIC_NAMES: tuple[str, ...] = tuple(
    name for name in typing.get_type_hints(ClipMetrics) if name not in _METRICS_LEFT_OUT
)

#: Schema of the metadata table, in column order.
COLUMNS: tuple[Column, ...] = (
    Column("clip_key", "str", "de-identified clip identifier; also the group name under /clips"),
    Column("patient_pseudonym", "str", "pseudonymous patient identifier"),
    Column("split", "str", "train, validation or test (patient-level)"),
    Column("levels", "str", "spinal levels, comma-separated in anatomical order, e.g. 'L4,L5'"),
    Column("side", "str?", "left, right or bilateral"),
    Column("technique", "str", "TT, OT, in-plane, out-of-plane, other or unknown"),
    Column("procedure_type", "str?", "kind of spinal injection"),
    Column("reviewer", "str?", "reviewer of the exported annotation"),
    Column("status", "str?", "review status of the exported annotation"),
    Column("has_annotation", "bool", "whether /clips/<key>/annotation exists"),
    Column("pixels_cleaned", "bool", "pixels outside the 2D ultrasound regions are 0"),
    Column("calibrated", "bool", "pixel size in mm is known (2D tissue region in cm)"),
    Column("n_frames", "int", "number of frames T"),
    Column("rows", "int", "frame height H in pixels"),
    Column("cols", "int", "frame width W in pixels"),
    Column("samples_per_pixel", "int", "1 (grey, frames T,H,W) or 3 (RGB, frames T,H,W,3)"),
    Column("photometric", "str", "of the stored frames: MONOCHROME1, MONOCHROME2 or RGB"),
    Column(
        "source_photometric",
        "str",
        "of the received clip (PALETTE COLOR, YBR_FULL_422, RGB, ...); colour is stored as RGB",
    ),
    Column("timed", "bool", "frame times are known (false: no Cine module; times NaN, not assessable)"),
    Column("pixel_size_row_mm", "float?", "mm per pixel down the rows"),
    Column("pixel_size_col_mm", "float?", "mm per pixel along the columns"),
    Column("duration_ms", "float?", "start of the last frame, ms after the first"),
    Column("has_outcome", "bool", "whether an outcome was recorded for this procedure side"),
    Column("outcome_side", "str?", "side the outcome refers to"),
    *(Column(f"outcome_{s}", "float?", f"outcome score {s}") for s in _OUTCOME_SCORES),
    Column("outcome_adverse_event", "str?", "adverse event recorded with the outcome"),
    Column("outcome_effective", "bool?", "VAS fell >= 50 % and ODI >= 40 % at 2 weeks"),
    *_metric_columns(),
)

_KINDS = ("str", "str?", "json", "int", "int?", "float?", "bool", "bool?")


def _enum_or_none(parse: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else parse(value)


@dataclass(frozen=True)
class ClipRecord:
    """One de-identified clip as the export hands it to the research-dataset writer.

    Parameters
    ----------
    clip_key : str
        De-identified identifier (replaced SOP Instance UID or a pseudonymous
        id); becomes the HDF5 group name, so it must not contain ``/``.
    patient_pseudonym : str
        Pseudonymous patient identifier (decides the split).
    frames : callable
        Called once by the writer; returns an iterable yielding the ``n_frames``
        decoded frames one at a time, each an ndarray of shape ``frame_shape``
        and dtype ``frame_dtype``, already pixel-cleaned when ``pixels_cleaned`` is true.
    n_frames : int
        Number of frames T, >= 1.
    frame_shape : tuple of int
        ``(H, W)`` for grey or ``(H, W, 3)`` for RGB frames.
    frame_times_ms : tuple of float
        Start of each frame in ms after the first (``FrameTimes.offsets_ms``);
        all NaN when ``timed`` is false.
    pixel_size_mm : tuple of float or None
        ``(row, col)`` mm per pixel of the primary 2D region; ``None`` when
        the clip is uncalibrated.
    levels : tuple of SpinalLevel
        Levels treated.
    side : Side or None
        Side treated.
    technique : Technique
        Needle technique.
    procedure_type : ProcedureType or None
        Kind of injection.
    annotation : ClipAnnotation or None
        The exported reviewer's annotation (its comments are not exported).
    metrics : mapping or None
        ``ClipMetrics.to_dict()`` of that annotation.
    outcome : Outcome or None
        Outcome of the procedure side (its study UID is not exported).
    reviewer : str or None
        Reviewer of the annotation; taken from the annotation when ``None``.
    status : ReviewStatus or None
        Review status; taken from the annotation when ``None``.
    pixels_cleaned : bool
        Whether every pixel outside the 2D regions is 0.
    frame_dtype : str
        ``uint8`` (default), ``uint16``, ``int8`` or ``int16``: 16-bit samples and
        16-bit palette entries are kept at their depth.
    photometric : str
        Of the frames as handed over: ``MONOCHROME1`` or ``MONOCHROME2`` for
        grey, ``RGB`` for colour; empty: ``MONOCHROME2`` or ``RGB`` by shape.
    source_photometric : str
        Of the received clip (``PALETTE COLOR``, ``YBR_FULL_422`` ...); empty:
        as ``photometric``.
    timed : bool
        False for a clip without frame timing: its times are unknown (stored
        as NaN) and its time metrics not assessable.

    Raises
    ------
    ExportError
        If the fields do not fit together (see the messages).
    """

    clip_key: str
    patient_pseudonym: str
    frames: Callable[[], Iterable[Frame]]
    n_frames: int
    frame_shape: tuple[int, ...]
    frame_times_ms: tuple[float, ...]
    pixel_size_mm: tuple[float, float] | None
    levels: tuple[SpinalLevel, ...] = ()
    side: Side | None = None
    technique: Technique = Technique.UNKNOWN
    procedure_type: ProcedureType | None = None
    annotation: ClipAnnotation | None = None
    metrics: Mapping[str, Any] | None = field(default=None)
    outcome: Outcome | None = None
    reviewer: str | None = None
    status: ReviewStatus | None = None
    pixels_cleaned: bool = True
    frame_dtype: str = "uint8"
    photometric: str = ""
    source_photometric: str = ""
    timed: bool = True

    def __post_init__(self) -> None:
        key = str(self.clip_key).strip()
        if not key or "/" in key or key in (".", ".."):
            raise ExportError(
                f"clip record: expected a clip key without '/' (it names an HDF5 group), but got "
                f"{self.clip_key!r}; use the de-identified SOP Instance UID"
            )
        shape = tuple(int(v) for v in self.frame_shape)
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)) or min(shape) < 1:
            raise ExportError(
                f"clip {key}: expected frame_shape (H, W) or (H, W, 3), but got {self.frame_shape!r}"
            )
        n_frames = int(self.n_frames)
        times = tuple(float(t) for t in self.frame_times_ms)
        if n_frames < 1 or len(times) != n_frames:
            raise ExportError(
                f"clip {key}: expected n_frames >= 1 and one frame time per frame, but got "
                f"n_frames={self.n_frames} and {len(times)} frame times"
            )
        timed = bool(self.timed)
        if timed and not all(math.isfinite(t) for t in times):
            raise ExportError(f"clip {key}: expected finite frame times, or timed=False for an untimed clip")
        if not timed:
            times = (math.nan,) * n_frames
        if self.frame_dtype not in FRAME_DTYPES:
            raise ExportError(
                f"clip {key}: expected frame_dtype one of {', '.join(FRAME_DTYPES)}, "
                f"but got {self.frame_dtype!r}"
            )
        grey = len(shape) == 2
        photometric = self.photometric or ("MONOCHROME2" if grey else "RGB")
        if photometric not in (("MONOCHROME1", "MONOCHROME2") if grey else ("RGB",)):
            raise ExportError(
                f"clip {key}: expected photometric MONOCHROME1/MONOCHROME2 for grey or RGB for colour "
                f"frames of shape {shape}, but got {photometric!r}; convert colour to RGB first"
            )
        size = self.pixel_size_mm
        if size is not None:
            size = (float(size[0]), float(size[1]))
            if not all(math.isfinite(v) and v > 0 for v in size):
                raise ExportError(
                    f"clip {key}: expected a positive pixel size (row, col) in mm or None, but got {size}"
                )
        reviewer, status = self.reviewer, self.status
        annotation = self.annotation
        if annotation is not None:
            if (annotation.n_frames, annotation.frame_shape) != (n_frames, shape[:2]):
                raise ExportError(
                    f"clip {key}: the annotation is of {annotation.n_frames} frames of "
                    f"{annotation.frame_shape}, but the clip has {n_frames} frames of {shape[:2]}; "
                    "was the annotation of another clip passed?"
                )
            reviewer = annotation.reviewer if reviewer is None else reviewer
            status = annotation.status if status is None else ReviewStatus.parse(status)
            if (reviewer, status) != (annotation.reviewer, annotation.status):
                raise ExportError(
                    f"clip {key}: reviewer/status {reviewer!r}/{status} differ from the annotation's "
                    f"{annotation.reviewer!r}/{annotation.status}; pass the annotation's or None"
                )
        if self.metrics is not None:
            unknown = sorted(set(self.metrics) - set(METRIC_NAMES) - set(_METRICS_LEFT_OUT))
            if unknown:
                raise ExportError(
                    f"clip {key}: metrics {unknown} are not in the export schema; expected the keys of "
                    f"ClipMetrics.to_dict(): {', '.join(METRIC_NAMES)}"
                )
        set_ = object.__setattr__
        set_(self, "clip_key", key)
        set_(self, "patient_pseudonym", str(self.patient_pseudonym).strip())
        set_(self, "frame_shape", shape)
        set_(self, "n_frames", n_frames)
        set_(self, "frame_times_ms", times)
        set_(self, "pixel_size_mm", size)
        set_(self, "levels", sort_levels([SpinalLevel.parse(lv) for lv in self.levels]))
        set_(self, "side", _enum_or_none(Side.parse, self.side))
        set_(self, "technique", Technique.parse(self.technique))
        set_(self, "procedure_type", _enum_or_none(ProcedureType.parse, self.procedure_type))
        set_(self, "reviewer", reviewer)
        set_(self, "status", _enum_or_none(ReviewStatus.parse, status))
        set_(self, "pixels_cleaned", bool(self.pixels_cleaned))
        set_(self, "timed", timed)

    @property
    def frames_photometric(self) -> str:
        """Photometric interpretation of the frames: ``photometric``, or by shape when it is empty."""
        return self.photometric or ("MONOCHROME2" if len(self.frame_shape) == 2 else "RGB")

    @property
    def received_photometric(self) -> str:
        """Photometric interpretation of the received clip (``source_photometric``, else of the frames)."""
        return self.source_photometric.strip() or self.frames_photometric


def clean_frames(frames: Iterable[Frame], regions: Sequence[UltrasoundRegion]) -> Iterator[Frame]:
    """Blank every pixel outside the 2D regions, one frame at a time (Clean Pixel Data).

    The streaming counterpart of :func:`archive.research.deid.blank_outside_regions`
    for a :class:`ClipRecord` frame source.

    Parameters
    ----------
    frames : iterable of ndarray of shape (H, W) or (H, W, 3), uint8
        Decoded frames.
    regions : sequence of UltrasoundRegion
        The clip's regions (``archive.research.deid.tissue_regions``); only 2D regions
        keep pixels.

    Yields
    ------
    ndarray of the input frame's shape, uint8
        A new frame, 0 outside the 2D regions.

    Raises
    ------
    ExportError
        If ``regions`` holds no 2D region: nothing could be kept, so the clip
        must be exported as not pixel-cleaned (or left out) instead.
    """
    if not any(r.spatial_format == SPATIAL_FORMAT_2D for r in regions):
        raise ExportError(
            "clean frames: expected at least one 2D ultrasound region to keep, but got none; export the "
            "clip with pixels_cleaned=False (if uncalibrated clips are allowed) or leave it out"
        )
    keep: npt.NDArray[np.bool_] | None = None
    for frame in frames:
        if keep is None:
            keep = keep_mask((frame.shape[0], frame.shape[1]), regions)
            if frame.ndim == 3:
                keep = keep[:, :, np.newaxis]
        yield np.where(keep, frame, np.uint8(0))


def metadata_row(record: ClipRecord, split: Split) -> dict[str, Any]:
    """One row of the metadata table, as plain Python values (``None`` for missing).

    Parameters
    ----------
    record : ClipRecord
        The clip.
    split : Split
        The split of the clip's patient.

    Returns
    -------
    dict
        Keyed by the names of :data:`COLUMNS`, in column order.
    """
    size = record.pixel_size_mm
    outcome = record.outcome
    row: dict[str, Any] = {
        "clip_key": record.clip_key,
        "patient_pseudonym": record.patient_pseudonym,
        "split": split.value,
        "levels": ",".join(lv.value for lv in record.levels),
        "side": None if record.side is None else record.side.value,
        "technique": record.technique.value,
        "procedure_type": None if record.procedure_type is None else record.procedure_type.value,
        "reviewer": record.reviewer,
        "status": None if record.status is None else record.status.value,
        "has_annotation": record.annotation is not None,
        "pixels_cleaned": record.pixels_cleaned,
        "calibrated": size is not None,
        "n_frames": record.n_frames,
        "rows": record.frame_shape[0],
        "cols": record.frame_shape[1],
        "samples_per_pixel": 1 if len(record.frame_shape) == 2 else 3,
        "photometric": record.frames_photometric,
        "source_photometric": record.received_photometric,
        "timed": record.timed,
        "pixel_size_row_mm": None if size is None else size[0],
        "pixel_size_col_mm": None if size is None else size[1],
        "duration_ms": record.frame_times_ms[-1] if record.timed else None,
        "has_outcome": outcome is not None,
        "outcome_side": None if outcome is None else Side.parse(outcome.side).value,
    }
    for score in _OUTCOME_SCORES:
        value = None if outcome is None else getattr(outcome, score)
        row[f"outcome_{score}"] = None if value is None else float(value)
    row["outcome_adverse_event"] = None if outcome is None else outcome.adverse_event
    row["outcome_effective"] = None if outcome is None else is_effective(outcome)
    metrics = record.metrics or {}
    for name in METRIC_NAMES:
        row[f"metric_{name}"] = metrics.get(name)
    return row


def metrics_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The exported metrics of a metadata row, keyed like ``ClipMetrics.to_dict()``.

    The original SOP Instance UID and the reviewer are not among them
    (the reviewer is ``row["reviewer"]``).
    """
    return {name: row[f"metric_{name}"] for name in METRIC_NAMES}


def storage_dtype(kind: str) -> Any:
    """The numpy/h5py dtype that stores a column of ``kind``."""
    if kind in ("str", "str?", "json"):
        import h5py  # heavy; imported where HDF5 is actually used

        return h5py.string_dtype("utf-8")
    return {"int": np.int64, "int?": np.int64, "float?": np.float64, "bool": np.bool_, "bool?": np.int8}[kind]


def encode_value(column: Column, value: Any) -> Any:
    """Convert a row value to what the column stores (module table).

    Raises
    ------
    ExportError
        If a required value is ``None`` or the kind is unknown.
    """
    kind = column.kind
    if kind not in _KINDS:
        raise ExportError(f"column {column.name}: unknown kind {kind!r}; expected one of {_KINDS}")
    if value is None and kind in ("str", "int", "bool"):
        raise ExportError(f"column {column.name}: expected a value (kind {kind}), but got None")
    if kind == "json":
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if kind in ("str", "str?"):
        return "" if value is None else str(value)
    if kind in ("int", "int?"):
        return -1 if value is None else int(value)
    if kind == "float?":
        return math.nan if value is None else float(value)
    if kind == "bool":
        return bool(value)
    return -1 if value is None else int(bool(value))


def decode_value(column: Column, stored: Any) -> Any:
    """Convert a stored value back to the row value (inverse of :func:`encode_value`)."""
    kind = column.kind
    if isinstance(stored, bytes):
        stored = stored.decode("utf-8")
    if kind == "json":
        return json.loads(stored)
    if kind == "str":
        return str(stored)
    if kind == "str?":
        return str(stored) or None
    if kind == "int":
        return int(stored)
    if kind == "int?":
        return None if int(stored) < 0 else int(stored)
    if kind == "float?":
        return None if math.isnan(float(stored)) else float(stored)
    if kind == "bool":
        return bool(stored)
    return None if int(stored) < 0 else bool(stored)
