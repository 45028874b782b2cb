"""Writer of the research HDF5 dataset: streamed clip by clip, written atomically.

The layout is documented in docs/hdf5-layout.md; :mod:`archive.research.export.hdf5_read`
reads it back. :class:`HDF5DatasetWriter` writes into ``<name>.partial`` beside
the final file and moves it to the final name only when :meth:`~HDF5DatasetWriter.close`
has written everything (flush, fsync, ``os.replace``, fsync of the directory),
so a failed export leaves nothing under the final name. Frames are pulled from
each :class:`~archive.research.export.records.ClipRecord` one at a time and written into
a dataset chunked per frame, so memory does not grow with the clip length or
the number of clips.

Compression is gzip level 1 by default: every HDF5 reader (h5py, MATLAB, R,
HDFView) decodes gzip without plugins, and level 1 is the fastest level while
still shrinking the mostly dark ultrasound frames and the masks several-fold.
``"lzf"`` is faster still but readable only where the h5py LZF filter is
installed; choose it for data that stays in Python.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np

import archive
from archive.errors import ExportError
from archive.fsutil import fsync_directory, fsync_file
from archive.model import NeedleView
from archive.research.export.card import CardInfo, DatasetCard, card_markdown
from archive.research.export.records import COLUMNS, ClipRecord, encode_value, metadata_row, storage_dtype
from archive.research.export.split import Split, SplitFractions, assign_split
from archive.review import ClipAnnotation

logger = logging.getLogger(__name__)

#: Value of the root attribute ``format`` of every dataset this module writes.
FORMAT_NAME = "usarchive-research-dataset"
#: Version of the layout in docs/hdf5-layout.md.
FORMAT_VERSION = 2
#: gzip level used with ``compression="gzip"``.
GZIP_LEVEL = 1
#: Codes of ``annotation/needle/view``: no needle on the frame, in-plane, out-of-plane.
NEEDLE_VIEW_CODES: dict[NeedleView | None, int] = {
    None: 0,
    NeedleView.IN_PLANE: 1,
    NeedleView.OUT_OF_PLANE: 2,
}

#: Metadata rows are kept in memory and appended to the table this many at a time
#: (one chunk of the column datasets), so memory stays bounded and appends are cheap.
ROWS_PER_FLUSH = 256

Compression = Literal["gzip", "lzf"]


@dataclass(frozen=True)
class ExportProgress:
    """Progress reported after every frame written.

    Parameters
    ----------
    clips_done : int
        Clips completely written before the present one.
    clip_key : str
        The clip being written.
    frames_done : int
        Frames of this clip written so far.
    clip_frames : int
        Frames of this clip in all.
    """

    clips_done: int
    clip_key: str
    frames_done: int
    clip_frames: int


ProgressCallback = Callable[[ExportProgress], None]


def sidecar_path(path: Path) -> Path:
    """The Markdown dataset card beside ``path``: ``OUT.h5`` -> ``OUT.card.md``."""
    return path.with_name(f"{path.stem}.card.md")


def _danger_dtype(n_classes: int, clip_key: str) -> type[np.unsignedinteger[Any]]:
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if n_classes <= np.iinfo(dtype).bits:
            return dtype
    raise ExportError(
        f"clip {clip_key}: expected at most 64 danger classes (one bit each), but got {n_classes}; "
        "merge classes before exporting"
    )


class HDF5DatasetWriter:
    """Write a research dataset: one group per clip, a metadata table, a split and a card.

    Use as a context manager; leaving the ``with`` block normally calls
    :meth:`close` (unless it was called inside the block, e.g. to get the
    card), leaving it by an exception calls :meth:`abort`.

    Parameters
    ----------
    path : path-like
        Final file name, e.g. ``research.h5``. Written as ``research.h5.partial``
        in the same directory until :meth:`close`.
    seed : int
        Seed of the patient-level split (:mod:`archive.research.export.split`).
    card_info : CardInfo
        What the exporter says about the dataset.
    split : tuple of float or SplitFractions
        Expected ``(train, validation, test)`` fractions of patients.
    compression : {"gzip", "lzf"}
        Filter of frames and masks (see the module doc for the choice).
    allow_not_pixel_cleaned : bool
        Accept uncalibrated clips whose pixels could not be cleaned; they are
        flagged in the metadata (``pixels_cleaned`` false) and the card.
    overwrite : bool
        Replace an existing file at ``path`` (otherwise an error).
    progress : callable, optional
        Called with an :class:`ExportProgress` after every frame.

    Raises
    ------
    ExportError
        If ``path`` exists and ``overwrite`` is false, or an option is invalid.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        seed: int,
        card_info: CardInfo,
        split: tuple[float, float, float] | SplitFractions = (0.7, 0.15, 0.15),
        compression: Compression = "gzip",
        allow_not_pixel_cleaned: bool = False,
        overwrite: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.sidecar_path = sidecar_path(self.path)
        if compression not in ("gzip", "lzf"):
            raise ExportError(f"compression: expected 'gzip' or 'lzf', but got {compression!r}")
        if self.path.exists() and not overwrite:
            raise ExportError(
                f"{self.path}: expected a new file name, but the file exists; choose another name or "
                "allow overwriting (--overwrite)"
            )
        self.seed = int(seed)
        self.card_info = card_info
        self.fractions = SplitFractions.of(split)
        self.compression: Compression = compression
        self.allow_not_pixel_cleaned = allow_not_pixel_cleaned
        self._progress = progress
        self._filter: dict[str, Any] = (
            {"compression": "gzip", "compression_opts": GZIP_LEVEL}
            if compression == "gzip"
            else {"compression": "lzf"}
        )
        self._keys: list[str] = []
        self._patient_split: dict[str, Split] = {}
        self._clip_splits: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._n_frames = 0
        self._n_annotated = 0
        self._not_cleaned: list[str] = []
        self._untimed: list[str] = []
        self._pending_rows: list[dict[str, Any]] = []
        self._file: h5py.File | None = h5py.File(self.partial_path, "w")
        self._file.create_group("clips")
        table = self._file.create_group("metadata")
        table.attrs["columns"] = [c.name for c in COLUMNS]
        table.attrs["kinds"] = [c.kind for c in COLUMNS]
        for column in COLUMNS:
            ds = table.create_dataset(
                column.name,
                shape=(0,),
                maxshape=(None,),
                chunks=(ROWS_PER_FLUSH,),
                dtype=storage_dtype(column.kind),
            )
            ds.attrs["kind"] = column.kind
            ds.attrs["description"] = column.description
        logger.info("writing research dataset %s (partial file %s)", self.path, self.partial_path)

    def __enter__(self) -> HDF5DatasetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._file is not None:  # not closed explicitly inside the block
            self.close()

    # -- clips ------------------------------------------------------------------------------

    def _open_file(self) -> h5py.File:
        if self._file is None:
            raise ExportError(f"{self.path}: the writer is closed (finished or aborted); start a new export")
        return self._file

    def add_clip(self, record: ClipRecord) -> Split:
        """Write one clip: frames, times, calibration, annotation and its metadata row.

        Parameters
        ----------
        record : ClipRecord
            The clip; its frames are pulled one at a time.

        Returns
        -------
        Split
            The split the clip (its patient) was assigned to.

        Raises
        ------
        ExportError
            If the clip key was already written, the clip is not pixel-cleaned
            without permission, or the frames do not match ``n_frames`` /
            ``frame_shape`` / uint8. The half-written clip group is removed and
            the writer stays usable; nothing of the clip is in the table.
        """
        h5 = self._open_file()
        key = record.clip_key
        if key in self._keys:
            raise ExportError(f"clip {key}: already in this dataset; export each clip once")
        if not record.pixels_cleaned:
            if record.pixel_size_mm is not None:
                raise ExportError(
                    f"clip {key}: expected a calibrated clip to be pixel-cleaned (its 2D regions are "
                    "known), but pixels_cleaned is false; blank the pixels outside the regions first"
                )
            if not self.allow_not_pixel_cleaned:
                raise ExportError(
                    f"clip {key}: expected pixel-cleaned frames, but the clip is uncalibrated and its "
                    "pixels were not cleaned; leave it out or allow it (allow_not_pixel_cleaned=True, "
                    "--allow-uncalibrated), which flags it in the metadata and the dataset card"
                )
        split = self._patient_split.get(record.patient_pseudonym)
        if split is None:
            split = assign_split(self.seed, record.patient_pseudonym, self.fractions)
        row = metadata_row(record, split)
        encoded = {c.name: encode_value(c, row[c.name]) for c in COLUMNS}
        clips = h5["clips"]
        group = clips.create_group(key)
        try:
            self._write_frames(group, record)
            times = group.create_dataset(
                "frame_times_ms", data=np.asarray(record.frame_times_ms, dtype=np.float64)
            )
            times.attrs["timed"] = record.timed
            size = record.pixel_size_mm
            pixel_size = group.create_dataset(
                "pixel_size_mm", data=np.asarray(size if size is not None else (np.nan, np.nan))
            )
            pixel_size.attrs["calibrated"] = size is not None
            if record.annotation is not None:
                self._write_annotation(group.create_group("annotation"), record.annotation, key)
            group.attrs["row"] = len(self._keys)
            group.attrs["split"] = split.value
            group.attrs["pixels_cleaned"] = record.pixels_cleaned
        except BaseException:
            del clips[key]
            raise
        self._pending_rows.append(encoded)
        if len(self._pending_rows) >= ROWS_PER_FLUSH:
            self._flush_rows()
        self._keys.append(key)
        self._patient_split[record.patient_pseudonym] = split
        self._clip_splits[split.value] += 1
        self._statuses["none" if record.status is None else record.status.value] += 1
        self._n_frames += record.n_frames
        self._n_annotated += record.annotation is not None
        if not record.timed:
            self._untimed.append(key)
        if not record.pixels_cleaned:
            self._not_cleaned.append(key)
            logger.warning("clip %s exported without pixel cleaning (uncalibrated)", key)
        logger.debug("clip %s written: %d frames, split %s", key, record.n_frames, split.value)
        return split

    def _write_frames(self, group: h5py.Group, record: ClipRecord) -> None:
        shape = (record.n_frames, *record.frame_shape)
        dtype = np.dtype(record.frame_dtype)
        frames = group.create_dataset(
            "frames", shape=shape, dtype=dtype, chunks=(1, *record.frame_shape), **self._filter
        )
        frames.attrs["photometric"] = record.frames_photometric
        frames.attrs["source_photometric"] = record.received_photometric
        written = 0
        for frame in record.frames():
            array = np.asarray(frame)
            if written >= record.n_frames:
                raise ExportError(
                    f"clip {record.clip_key}: expected {record.n_frames} frames, but the frame source "
                    "yields more; fix n_frames"
                )
            if array.shape != record.frame_shape or array.dtype != dtype:
                raise ExportError(
                    f"clip {record.clip_key} frame {written}: expected {dtype} of shape "
                    f"{record.frame_shape}, but got {array.dtype} of shape {array.shape}"
                )
            frames[written] = array
            written += 1
            if self._progress is not None:
                self._progress(ExportProgress(len(self._keys), record.clip_key, written, record.n_frames))
        if written != record.n_frames:
            raise ExportError(
                f"clip {record.clip_key}: expected {record.n_frames} frames, but the frame source "
                f"yielded {written}; fix n_frames or the frame source"
            )

    def _mask_dataset(self, group: h5py.Group, name: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
        # Unwritten chunks are never allocated: frames without a mask cost nothing.
        return group.create_dataset(
            name, shape=shape, dtype=dtype, chunks=(1, *shape[1:]), fillvalue=0, **self._filter
        )

    def _write_annotation(self, group: h5py.Group, annotation: ClipAnnotation, key: str) -> None:
        n_frames = annotation.n_frames
        rows, cols = annotation.frame_shape
        group.attrs["reviewer"] = annotation.reviewer
        group.attrs["status"] = annotation.status.value

        points: list[tuple[float, float]] = []
        offsets = np.zeros(n_frames + 1, dtype=np.int64)
        views = np.zeros(n_frames, dtype=np.int8)
        tips = np.full((n_frames, 2), np.nan)
        for frame in range(n_frames):
            mark = annotation.needle_at(frame)
            if mark is not None:
                points.extend(mark.points)
                views[frame] = NEEDLE_VIEW_CODES[mark.view]
                tips[frame] = mark.tip
            offsets[frame + 1] = len(points)
        needle = group.create_group("needle")
        needle.create_dataset("points", data=np.asarray(points, dtype=np.float64).reshape(-1, 2))
        needle.create_dataset("offsets", data=offsets)
        needle.create_dataset("view", data=views)
        needle.create_dataset("keyframe", data=np.isin(np.arange(n_frames), list(annotation.needle)))
        group.create_dataset("tips", data=tips)

        names: list[str] = []
        target_points = np.full((n_frames, 2), np.nan)
        name_index = np.full(n_frames, -1, dtype=np.int32)
        for frame in range(n_frames):
            target = annotation.target_at(frame)
            if target is not None:
                if target.name not in names:
                    names.append(target.name)
                target_points[frame] = target.point
                name_index[frame] = names.index(target.name)
        target_group = group.create_group("target")
        target_group.create_dataset("points", data=target_points)
        target_group.create_dataset("name_index", data=name_index)
        target_group.create_dataset("keyframe", data=np.isin(np.arange(n_frames), list(annotation.target)))
        target_group.attrs["names"] = names

        spread = group.create_group("spread")
        spread_masks = self._mask_dataset(spread, "masks", (n_frames, rows, cols), np.uint8)
        for frame, mask in annotation.spread.items():
            spread_masks[frame] = mask.view(np.uint8)
        spread.create_dataset("present", data=np.isin(np.arange(n_frames), list(annotation.spread)))

        classes = sorted({name for by_class in annotation.danger.values() for name in by_class})
        dtype = _danger_dtype(len(classes), key)
        danger = group.create_group("danger")
        danger.attrs["class_names"] = classes
        danger_bits = self._mask_dataset(danger, "masks", (n_frames, rows, cols), dtype)
        present = np.zeros((n_frames, len(classes)), dtype=np.bool_)
        for frame, by_class in annotation.danger.items():
            bits = np.zeros((rows, cols), dtype=dtype)
            for bit, name in enumerate(classes):
                if name in by_class:
                    bits |= by_class[name].astype(dtype) << dtype(bit)
                    present[frame, bit] = True
            danger_bits[frame] = bits
        danger.create_dataset("present", data=present)

        events = group.create_group("events")
        for event, frame in annotation.events.items():
            events.attrs[event.value] = frame + 1  # frame number, 1-based (format 2)
        adverse = group.create_group("adverse_events")
        adverse.create_dataset(
            "frames", data=np.asarray([a.frame + 1 for a in annotation.adverse_events], np.int64)
        )
        adverse.create_dataset(
            "notes", data=[a.note for a in annotation.adverse_events], dtype=h5py.string_dtype("utf-8")
        )

    def _flush_rows(self) -> None:
        """Append the pending metadata rows to the column datasets."""
        if not self._pending_rows:
            return
        table = self._open_file()["metadata"]
        for column in COLUMNS:
            dataset = table[column.name]
            start = dataset.shape[0]
            values = [row[column.name] for row in self._pending_rows]
            dataset.resize((start + len(values),))
            dataset[start:] = np.asarray(values, dtype=dataset.dtype)
        self._pending_rows.clear()

    # -- finishing --------------------------------------------------------------------------

    def _card(self) -> DatasetCard:
        patients_per_split = Counter(split.value for split in self._patient_split.values())
        order = [s.value for s in Split]
        return DatasetCard(
            info=self.card_info,
            created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
            software=f"usarchive {archive.__version__}",
            format_version=FORMAT_VERSION,
            seed=self.seed,
            split_fractions=self.fractions.as_tuple(),
            compression=self.compression if self.compression == "lzf" else f"gzip level {GZIP_LEVEL}",
            n_clips=len(self._keys),
            n_patients=len(self._patient_split),
            n_frames=self._n_frames,
            n_annotated=self._n_annotated,
            clips_per_split={s: self._clip_splits[s] for s in order},
            patients_per_split={s: patients_per_split[s] for s in order},
            clips_per_status=dict(sorted(self._statuses.items())),
            not_pixel_cleaned=tuple(self._not_cleaned),
            untimed=tuple(self._untimed),
        )

    def close(self) -> DatasetCard:
        """Finish the dataset: card attributes, fsync, move to the final name, write the sidecar.

        Returns
        -------
        DatasetCard
            The card written into the file and the sidecar Markdown.

        Raises
        ------
        ExportError
            If the writer was already closed or aborted. Any error while
            finishing aborts the export (no file under the final name).
        """
        h5 = self._open_file()
        sidecar_partial = self.sidecar_path.with_name(self.sidecar_path.name + ".partial")
        try:
            self._flush_rows()
            card = self._card()
            h5.attrs["format"] = FORMAT_NAME
            h5.attrs["format_version"] = FORMAT_VERSION
            for name, value in card.attributes().items():
                h5.attrs[name] = value
            h5.flush()
            h5.close()
            self._file = None
            fsync_file(self.partial_path)
            sidecar_partial.write_text(card_markdown(card, self.path.name), encoding="utf-8")
            fsync_file(sidecar_partial)
            self.partial_path.replace(self.path)
            sidecar_partial.replace(self.sidecar_path)
            fsync_directory(self.path.parent)
        except BaseException:
            self.abort()
            raise
        logger.info(
            "research dataset %s written: %d clips, %d patients, %d frames",
            self.path,
            card.n_clips,
            card.n_patients,
            card.n_frames,
        )
        return card

    def abort(self) -> None:
        """Give up: close and delete the partial file; nothing appears under the final name."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        self.partial_path.unlink(missing_ok=True)
        self.sidecar_path.with_name(self.sidecar_path.name + ".partial").unlink(missing_ok=True)
        logger.info("research dataset %s aborted; partial file removed", self.path)
