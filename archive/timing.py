"""Per-frame times of a clip from the Cine and Multi-frame modules.

Frame indices are **0-based** throughout this API (frame 0 is the first
frame); DICOM numbers frames from 1, so DICOM frame ``n`` is index ``n - 1``.

Sources, in order:

1. the attribute named by Frame Increment Pointer (0028,0009): Frame Time
   (0018,1063, ms per frame) or Frame Time Vector (0018,1065, one value per
   frame, the first 0, then the increment from the previous frame, in ms);
2. without a usable pointer, Frame Time, then Frame Time Vector if present;
3. Cine Rate (0018,0040, frames per second): ``1000 / CineRate`` ms per frame.

A single-frame image without any of them has one frame at 0 ms. A multi-frame
image without any of them raises :class:`~archive.errors.TimingError`.

The absolute start is Content Date (0008,0023) + Content Time (0008,0033) +
Frame Delay (0018,1066, ms from Content Time to the first frame). When Timezone
Offset From UTC (0008,0201) is present the start is timezone-aware, otherwise
naive (local time of the scanner).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import DA, TM

from archive.errors import TimingError

logger = logging.getLogger(__name__)

SOURCE_FRAME_TIME = "FrameTime"
SOURCE_FRAME_TIME_VECTOR = "FrameTimeVector"
SOURCE_CINE_RATE = "CineRate"
SOURCE_SINGLE_FRAME = "SingleFrame"
#: Source of :func:`unknown_frame_times`: the clip carries no timing at all.
SOURCE_UNKNOWN = "unknown"

_FRAME_TIME_TAG = Tag(0x0018, 0x1063)
_FRAME_TIME_VECTOR_TAG = Tag(0x0018, 0x1065)


@dataclass(frozen=True)
class FrameTimes:
    """When each frame of a clip starts.

    Parameters
    ----------
    offsets_ms : tuple of float
        Start of each frame in ms from the start of the first frame;
        ``offsets_ms[0] == 0``. One value per frame, 0-based.
    start : datetime or None
        Absolute start of the first frame, or ``None`` when Content Date/Time
        are absent or unreadable. Timezone-aware only when the dataset has
        Timezone Offset From UTC.
    source : str
        ``"FrameTime"``, ``"FrameTimeVector"``, ``"CineRate"`` or
        ``"SingleFrame"``.
    nominal_frame_time_ms : float or None
        Duration of one frame in ms: Frame Time, ``1000 / CineRate``, or the
        mean increment of a Frame Time Vector; ``None`` for a single frame
        without timing.
    """

    offsets_ms: tuple[float, ...]
    start: datetime | None
    source: str
    nominal_frame_time_ms: float | None

    @property
    def number_of_frames(self) -> int:
        """Number of frames."""
        return len(self.offsets_ms)

    @property
    def timed(self) -> bool:
        """False for :func:`unknown_frame_times` (offsets NaN): time metrics are not assessable."""
        return self.source != SOURCE_UNKNOWN

    def _check_index(self, frame_index: int) -> None:
        if not 0 <= frame_index < len(self.offsets_ms):
            raise IndexError(
                f"frame_index: expected 0..{len(self.offsets_ms) - 1} (0-based), but got {frame_index}"
            )

    def offset_s(self, frame_index: int) -> float:
        """Start of frame ``frame_index`` (0-based) in seconds from the first frame."""
        self._check_index(frame_index)
        self._check_timed()
        return self.offsets_ms[frame_index] / 1000.0

    def _check_timed(self) -> None:
        if not self.timed:
            raise TimingError(
                "frame time: expected a clip with Frame Time, Frame Time Vector or Cine Rate, but this "
                "clip has no timing; its frame times are unknown"
            )

    def absolute(self, frame_index: int) -> datetime:
        """Absolute start time of frame ``frame_index`` (0-based).

        Raises
        ------
        TimingError
            If the clip has no Content Date/Time.
        IndexError
            If ``frame_index`` is out of range.
        """
        self._check_index(frame_index)
        self._check_timed()
        if self.start is None:
            raise TimingError(
                "absolute frame time: expected Content Date (0008,0023) and Content Time (0008,0033) "
                "in the clip, but they are absent or unreadable; use offsets from the clip start instead"
            )
        return self.start + timedelta(milliseconds=self.offsets_ms[frame_index])

    def frame_at(self, time_ms: float) -> int:
        """Index (0-based) of the frame showing ``time_ms`` after the first frame's start.

        A frame shows from its own offset until the next frame's offset; the
        last frame is returned for any time at or after its start.

        Raises
        ------
        ValueError
            If ``time_ms`` is negative.
        """
        if time_ms < 0:
            raise ValueError(f"time_ms: expected a time >= 0 ms from the clip start, but got {time_ms}")
        self._check_timed()
        return bisect.bisect_right(self.offsets_ms, time_ms) - 1


def _tags(value: Any) -> list[BaseTag]:
    if value is None or value == "":
        return []
    if isinstance(value, BaseTag | int):
        return [Tag(value)]
    return [Tag(v) for v in value]


def _floats(value: Any) -> list[float]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [float(value)]
    return [float(v) for v in value]


def _present(ds: Dataset, keyword: str) -> bool:
    return ds.get(keyword) not in (None, "")


def _from_frame_time(ds: Dataset, n_frames: int) -> FrameTimes:
    frame_time_ms = float(ds.FrameTime)
    if frame_time_ms <= 0:
        raise TimingError(
            f"FrameTime (0018,1063): expected a positive number of ms per frame, but got {frame_time_ms}; "
            "the clip's timing is unusable, fix its header"
        )
    offsets = tuple(i * frame_time_ms for i in range(n_frames))
    return FrameTimes(offsets, None, SOURCE_FRAME_TIME, frame_time_ms)


def _from_vector(ds: Dataset, n_frames: int) -> FrameTimes:
    increments = _floats(ds.FrameTimeVector)
    if len(increments) != n_frames:
        raise TimingError(
            f"FrameTimeVector (0018,1065): expected one value per frame ({n_frames}, NumberOfFrames "
            f"(0028,0008)), but got {len(increments)}; the clip's header is inconsistent, fix "
            "NumberOfFrames or the vector"
        )
    if any(d < 0 for d in increments):
        raise TimingError(
            f"FrameTimeVector (0018,1065): expected increments >= 0 ms, but got {increments}; "
            "frames cannot go back in time, fix the vector"
        )
    if increments[0] != 0:
        logger.warning(
            "FrameTimeVector starts with %s, expected 0; taken as the first frame's start", increments[0]
        )
    offsets = tuple(accumulate(increments[1:], initial=0.0))
    nominal = offsets[-1] / (n_frames - 1) if n_frames > 1 else None
    return FrameTimes(offsets, None, SOURCE_FRAME_TIME_VECTOR, nominal)


def _from_cine_rate(ds: Dataset, n_frames: int) -> FrameTimes:
    rate = float(ds.CineRate)
    if rate <= 0:
        raise TimingError(
            f"CineRate (0018,0040): expected a positive number of frames per second, but got {rate}; "
            "the clip's timing is unusable, fix its header"
        )
    frame_time_ms = 1000.0 / rate
    offsets = tuple(i * frame_time_ms for i in range(n_frames))
    return FrameTimes(offsets, None, SOURCE_CINE_RATE, frame_time_ms)


def _relative_times(ds: Dataset, n_frames: int) -> FrameTimes:
    pointed = _tags(ds.get("FrameIncrementPointer"))
    if _FRAME_TIME_VECTOR_TAG in pointed and _present(ds, "FrameTimeVector"):
        return _from_vector(ds, n_frames)
    if _FRAME_TIME_TAG in pointed and _present(ds, "FrameTime"):
        return _from_frame_time(ds, n_frames)
    if pointed:
        logger.info("FrameIncrementPointer names %s, none of which is a usable timing attribute", pointed)
    if _present(ds, "FrameTime"):
        return _from_frame_time(ds, n_frames)
    if _present(ds, "FrameTimeVector"):
        return _from_vector(ds, n_frames)
    if _present(ds, "CineRate"):
        return _from_cine_rate(ds, n_frames)
    if n_frames == 1:
        return FrameTimes((0.0,), None, SOURCE_SINGLE_FRAME, None)
    raise TimingError(
        f"frame timing: expected FrameTime (0018,1063), FrameTimeVector (0018,1065) (named by "
        f"FrameIncrementPointer (0028,0009)) or CineRate (0018,0040) in a clip of {n_frames} frames, "
        "but none is present; the clip cannot be timed, re-export it with the Cine module"
    )


def _start(ds: Dataset) -> datetime | None:
    date_text = ds.get("ContentDate")
    time_text = ds.get("ContentTime")
    if not date_text or not time_text:
        return None
    try:
        start = datetime.combine(DA(str(date_text)), TM(str(time_text)))
    except ValueError as exc:
        logger.warning(
            "ContentDate %r / ContentTime %r unreadable (%s); no absolute frame times",
            date_text,
            time_text,
            exc,
        )
        return None
    offset_text = str(ds.get("TimezoneOffsetFromUTC") or "")
    if offset_text:
        try:
            sign = -1 if offset_text[0] == "-" else 1
            hours, minutes = int(offset_text[1:3]), int(offset_text[3:5])
            start = start.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
        except (ValueError, IndexError):
            logger.warning("TimezoneOffsetFromUTC %r is not +HHMM/-HHMM; start left naive", offset_text)
    delay = ds.get("FrameDelay")
    if delay not in (None, ""):
        start += timedelta(milliseconds=float(delay))
    return start


def frame_times(ds: Dataset) -> FrameTimes:
    """Per-frame times of an image.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The image's dataset; may be header-only.

    Returns
    -------
    FrameTimes
        One offset per frame (``NumberOfFrames``, 1 when absent), 0-based.

    Raises
    ------
    TimingError
        If a multi-frame image has no Frame Time, Frame Time Vector or Cine
        Rate; if the Frame Time Vector's length differs from Number of Frames or
        it has negative increments; if Frame Time or Cine Rate is not positive.
    """
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if n_frames < 1:
        raise TimingError(f"NumberOfFrames (0028,0008): expected >= 1, but got {n_frames}; fix the header")
    relative = _relative_times(ds, n_frames)
    return FrameTimes(relative.offsets_ms, _start(ds), relative.source, relative.nominal_frame_time_ms)


def unknown_frame_times(n_frames: int) -> FrameTimes:
    """Frame times of a clip that carries none: offsets NaN, no start, source ``"unknown"``.

    Parameters
    ----------
    n_frames : int
        Number of frames, >= 1.

    Returns
    -------
    FrameTimes
        ``timed`` is false; :meth:`FrameTimes.offset_s`, :meth:`FrameTimes.absolute`
        and :meth:`FrameTimes.frame_at` raise :class:`TimingError`.
    """
    return FrameTimes((math.nan,) * n_frames, None, SOURCE_UNKNOWN, None)


def frame_times_or_unknown(ds: Dataset) -> FrameTimes:
    """:func:`frame_times`, or :func:`unknown_frame_times` when the clip has no timing attribute at all.

    Used by the exports and audits, which take untimed clips with their times
    marked unknown (time metrics not assessable). Timing that is present but
    wrong (a Frame Time Vector of the wrong length, a Frame Time of 0) still
    raises.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The image's dataset; may be header-only.

    Returns
    -------
    FrameTimes

    Raises
    ------
    TimingError
        As :func:`frame_times`, except for a clip without any timing attribute.
    """
    if any(_present(ds, kw) for kw in ("FrameTime", "FrameTimeVector", "CineRate")):
        return frame_times(ds)
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if n_frames <= 1:
        return frame_times(ds)
    logger.info(
        "instance %s: no Frame Time, Frame Time Vector or Cine Rate; frame times unknown",
        ds.get("SOPInstanceUID", "<no SOPInstanceUID>"),
    )
    return unknown_frame_times(n_frames)
