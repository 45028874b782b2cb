"""Reader of the research HDF5 dataset written by :mod:`archive.research.export.hdf5`.

:func:`read_dataset` opens the file read-only and returns a
:class:`ResearchDataset`: the card, the metadata rows, and one
:class:`DatasetClip` per clip whose frames and masks stay on disk (h5py
datasets, read a frame at a time by indexing) while the small per-frame
arrays (needle, tips, target, times) are loaded. :meth:`DatasetClip.annotation`
rebuilds the reviewer's :class:`~archive.review.ClipAnnotation` from the
keyframe flags, so needle and target keyframes come back as keyframes and the
interpolated frames are interpolated again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from archive.errors import ExportError
from archive.model import ClipEvent, ReviewStatus
from archive.research.export.card import DatasetCard
from archive.research.export.hdf5 import FORMAT_NAME, FORMAT_VERSION, NEEDLE_VIEW_CODES
from archive.research.export.records import COLUMNS, decode_value, metrics_from_row
from archive.research.export.split import Split
from archive.review import AdverseEvent, ClipAnnotation, NeedleMark, TargetMark

_VIEW_OF_CODE = {code: view for view, code in NEEDLE_VIEW_CODES.items()}


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ClipLabels:
    """A reviewer's marks of one clip as exported: dense per-frame arrays plus masks on disk.

    Parameters
    ----------
    reviewer, status : str
        Reviewer and review status.
    needle_points : ndarray of shape (N, 2), float64
        All needle points ``(row, col)``, frame after frame.
    needle_offsets : ndarray of shape (T + 1,), int64
        Frame ``t``'s polyline is ``needle_points[offsets[t]:offsets[t + 1]]``.
    needle_view : ndarray of shape (T,), int8
        0 no needle, 1 in-plane, 2 out-of-plane.
    needle_keyframe : ndarray of shape (T,), bool
        The reviewer marked the needle on this frame (else interpolated).
    tips : ndarray of shape (T, 2), float64
        Needle tip per frame, NaN where there is no needle.
    target_points : ndarray of shape (T, 2), float64
        Target per frame, NaN where there is none.
    target_name_index : ndarray of shape (T,), int32
        Index into ``target_names``, -1 where there is no target.
    target_names : tuple of str
        Anatomical target names.
    target_keyframe : ndarray of shape (T,), bool
        The reviewer marked the target on this frame.
    spread_masks : h5py.Dataset of shape (T, H, W), uint8
        Spread masks (0/1), read lazily.
    spread_present : ndarray of shape (T,), bool
        Frames with a spread mask (an all-zero mask there means "none seen").
    danger_masks : h5py.Dataset of shape (T, H, W), unsigned int
        Bit ``k`` set where class ``danger_classes[k]`` is, read lazily.
    danger_present : ndarray of shape (T, K), bool
        Frames and classes with a danger mask.
    danger_classes : tuple of str
        Danger class names, bit order.
    events : mapping of ClipEvent to int
        Frame of each event.
    adverse_events : tuple of AdverseEvent
        Adverse events with notes.
    """

    reviewer: str
    status: str
    needle_points: npt.NDArray[np.float64]
    needle_offsets: npt.NDArray[np.int64]
    needle_view: npt.NDArray[np.int8]
    needle_keyframe: npt.NDArray[np.bool_]
    tips: npt.NDArray[np.float64]
    target_points: npt.NDArray[np.float64]
    target_name_index: npt.NDArray[np.int32]
    target_names: tuple[str, ...]
    target_keyframe: npt.NDArray[np.bool_]
    spread_masks: h5py.Dataset
    spread_present: npt.NDArray[np.bool_]
    danger_masks: h5py.Dataset
    danger_present: npt.NDArray[np.bool_]
    danger_classes: tuple[str, ...]
    events: Mapping[ClipEvent, int]
    adverse_events: tuple[AdverseEvent, ...]

    @classmethod
    def read(cls, group: h5py.Group) -> ClipLabels:
        """Load the ``annotation`` group of a clip."""
        needle, target, danger = group["needle"], group["target"], group["danger"]
        adverse = group["adverse_events"]
        notes = [_text(n) for n in adverse["notes"][()]]
        return cls(
            reviewer=_text(group.attrs["reviewer"]),
            status=_text(group.attrs["status"]),
            needle_points=needle["points"][()],
            needle_offsets=needle["offsets"][()],
            needle_view=needle["view"][()],
            needle_keyframe=needle["keyframe"][()],
            tips=group["tips"][()],
            target_points=target["points"][()],
            target_name_index=target["name_index"][()],
            target_names=tuple(_text(n) for n in target.attrs["names"]),
            target_keyframe=target["keyframe"][()],
            spread_masks=group["spread"]["masks"],
            spread_present=group["spread"]["present"][()],
            danger_masks=danger["masks"],
            danger_present=danger["present"][()],
            danger_classes=tuple(_text(n) for n in danger.attrs["class_names"]),
            # The file holds frame numbers (1-based); this object, like ClipAnnotation, indices.
            events={ClipEvent.parse(_text(k)): int(v) - 1 for k, v in group["events"].attrs.items()},
            adverse_events=tuple(
                AdverseEvent(int(f) - 1, note) for f, note in zip(adverse["frames"][()], notes, strict=True)
            ),
        )

    def needle_polyline(self, frame: int) -> npt.NDArray[np.float64] | None:
        """The needle on ``frame`` as an array of shape (k, 2) ``(row, col)``, tip last; or ``None``."""
        if self.needle_view[frame] == 0:
            return None
        return self.needle_points[self.needle_offsets[frame] : self.needle_offsets[frame + 1]]

    def spread_mask(self, frame: int) -> npt.NDArray[np.bool_] | None:
        """The spread mask of ``frame``, shape (H, W) bool, or ``None`` if the frame has none."""
        if not self.spread_present[frame]:
            return None
        return np.asarray(self.spread_masks[frame], dtype=np.bool_)

    def danger_at(self, frame: int) -> dict[str, npt.NDArray[np.bool_]]:
        """Danger masks of ``frame`` by class name, each shape (H, W) bool (empty if none)."""
        classes = [k for k, name in enumerate(self.danger_classes) if self.danger_present[frame, k]]
        if not classes:
            return {}
        bits = self.danger_masks[frame]
        return {self.danger_classes[k]: ((bits >> k) & 1).astype(np.bool_) for k in classes}


@dataclass(frozen=True)
class DatasetClip:
    """One clip of a research dataset.

    Parameters
    ----------
    clip_key : str
        De-identified clip identifier.
    metadata : mapping
        The clip's metadata row (column name to value, ``None`` for missing).
    frames : h5py.Dataset of shape (T, H, W) or (T, H, W, 3), uint8 (uint16/int16 for 16-bit clips)
        Read lazily: ``clip.frames[t]`` decodes one frame.
    frame_times_ms : ndarray of shape (T,), float64
        Frame start times in ms after the first frame; all NaN when the clip
        has no frame timing (``timed`` false).
    timed : bool
        Whether the frame times are known; false for a clip without a Cine
        module, whose time metrics are not assessable.
    photometric : str
        Of the stored frames: ``MONOCHROME1``, ``MONOCHROME2`` or ``RGB``.
    source_photometric : str
        Of the received clip (``PALETTE COLOR``, ``YBR_FULL_422``, ...).
    pixel_size_mm : tuple of float or None
        ``(row, col)`` mm per pixel, ``None`` if uncalibrated.
    labels : ClipLabels or None
        The exported reviewer's marks.
    """

    clip_key: str
    metadata: Mapping[str, Any]
    frames: h5py.Dataset
    frame_times_ms: npt.NDArray[np.float64]
    pixel_size_mm: tuple[float, float] | None
    labels: ClipLabels | None
    timed: bool = True
    photometric: str = "MONOCHROME2"
    source_photometric: str = "MONOCHROME2"

    @property
    def split(self) -> Split:
        """The split of the clip's patient."""
        return Split(self.metadata["split"])

    @property
    def metrics(self) -> dict[str, Any]:
        """Exported audit metrics, keyed like ``ClipMetrics.to_dict()`` (no UID, no reviewer)."""
        return metrics_from_row(self.metadata)

    def annotation(self) -> ClipAnnotation | None:
        """Rebuild the reviewer's annotation from the keyframes (``None`` if not annotated).

        The annotation's ``sop_instance_uid`` is the clip key; review comments
        are not exported, so it has none.
        """
        labels = self.labels
        if labels is None:
            return None
        needle = {}
        for frame in np.flatnonzero(labels.needle_keyframe):
            points = labels.needle_polyline(int(frame))
            view = _VIEW_OF_CODE[int(labels.needle_view[frame])]
            if points is None or view is None:
                raise ExportError(
                    f"clip {self.clip_key}: needle keyframe {frame} has no needle points; the file is damaged"
                )
            needle[int(frame)] = NeedleMark(tuple((float(r), float(c)) for r, c in points), view)
        target = {
            int(frame): TargetMark(
                (float(labels.target_points[frame, 0]), float(labels.target_points[frame, 1])),
                labels.target_names[labels.target_name_index[frame]],
            )
            for frame in np.flatnonzero(labels.target_keyframe)
        }
        spread = {
            int(f): np.asarray(labels.spread_masks[f], dtype=np.bool_)
            for f in np.flatnonzero(labels.spread_present)
        }
        danger_frames = np.flatnonzero(labels.danger_present.any(axis=1))
        danger = {int(f): labels.danger_at(int(f)) for f in danger_frames}
        rows, cols = int(self.frames.shape[1]), int(self.frames.shape[2])
        return ClipAnnotation(
            sop_instance_uid=self.clip_key,
            reviewer=labels.reviewer,
            n_frames=int(self.frames.shape[0]),
            frame_shape=(rows, cols),
            needle=needle,
            target=target,
            spread=spread,
            danger=danger,
            events=labels.events,
            adverse_events=labels.adverse_events,
            status=ReviewStatus.parse(labels.status),
        )


class ResearchDataset:
    """An open research dataset; close it (or use ``with``) to release the file.

    Attributes
    ----------
    path : Path
        The file.
    card : DatasetCard
        The dataset card from the file's attributes.
    metadata : tuple of dict
        The metadata table, one row per clip in export order.
    clips : dict of str to DatasetClip
        The clips by key, in export order.
    """

    def __init__(self, path: Path, h5: h5py.File) -> None:
        self.path = path
        self._file = h5
        self.card = DatasetCard.from_json(_text(h5.attrs["card_json"]))
        table = h5["metadata"]
        columns = {c.name: c for c in COLUMNS}
        names = [_text(n) for n in table.attrs["columns"]]
        if set(names) != set(columns):
            raise ExportError(
                f"{path}: expected metadata columns {sorted(columns)}, but the file has {sorted(names)}; "
                "it was written by another version of usarchive"
            )
        values = {name: table[name][()] for name in names}
        n_rows = len(values["clip_key"])
        self.metadata: tuple[dict[str, Any], ...] = tuple(
            {name: decode_value(columns[name], values[name][i]) for name in names} for i in range(n_rows)
        )
        self.clips: dict[str, DatasetClip] = {}
        for row in self.metadata:
            key = row["clip_key"]
            group = h5["clips"][key]
            size = group["pixel_size_mm"][()]
            calibrated = bool(group["pixel_size_mm"].attrs["calibrated"])
            self.clips[key] = DatasetClip(
                clip_key=key,
                metadata=row,
                frames=group["frames"],
                frame_times_ms=group["frame_times_ms"][()],
                pixel_size_mm=(float(size[0]), float(size[1])) if calibrated else None,
                labels=ClipLabels.read(group["annotation"]) if "annotation" in group else None,
                timed=bool(group["frame_times_ms"].attrs.get("timed", True)),
                photometric=_text(group["frames"].attrs.get("photometric", "MONOCHROME2")),
                source_photometric=_text(
                    group["frames"].attrs.get(
                        "source_photometric", group["frames"].attrs.get("photometric", "MONOCHROME2")
                    )
                ),
            )

    def __enter__(self) -> ResearchDataset:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[DatasetClip]:
        return iter(self.clips.values())

    def in_split(self, split: Split | str) -> list[DatasetClip]:
        """The clips of one split, in export order."""
        wanted = Split(split)
        return [clip for clip in self.clips.values() if clip.split is wanted]

    def split_of_patients(self) -> dict[str, Split]:
        """Each patient pseudonym's split."""
        return {row["patient_pseudonym"]: Split(row["split"]) for row in self.metadata}

    def close(self) -> None:
        """Close the HDF5 file; frames and masks can no longer be read."""
        self._file.close()


def read_dataset(path: str | os.PathLike[str]) -> ResearchDataset:
    """Open a research dataset written by :class:`~archive.research.export.hdf5.HDF5DatasetWriter`.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file.

    Returns
    -------
    ResearchDataset
        Open read-only; use it as a context manager or call ``close()``.

    Raises
    ------
    ExportError
        If the file is not a usarchive research dataset of a known format version.
    OSError
        If the file cannot be opened as HDF5.
    """
    file_path = Path(path)
    h5 = h5py.File(file_path, "r")
    try:
        found = (_text(h5.attrs.get("format", "")), int(h5.attrs.get("format_version", -1)))
        if found != (FORMAT_NAME, FORMAT_VERSION):
            raise ExportError(
                f"{file_path}: expected a usarchive research dataset (format {FORMAT_NAME!r} version "
                f"{FORMAT_VERSION}), but found format {found[0]!r} version {found[1]}; export it again "
                "with this version of usarchive"
            )
        return ResearchDataset(file_path, h5)
    except BaseException:
        h5.close()
        raise
