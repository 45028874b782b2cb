"""Ground truth of a synthetic clip and its JSON form.

Positions are full-image pixel coordinates ``[row, col]`` as floats; the tip
is the last (deepest) point of a needle polyline. Masks are stacks of shape
(T, rows, cols) stored as base64 of zlib-compressed ``numpy.packbits``.
The ``metrics`` are computed from the geometric model in millimetres, not
measured from pixels, so measurement code can be tested against them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from archive.errors import PhantomError
from archive.review.maskcodec import pack_mask, unpack_mask

#: Identifies the JSON layout; bump when it changes incompatibly.
SCHEMA = "usarchive-phantom-truth/1"

Point = list[float]


def encode_mask(mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Compress a boolean mask stack for JSON.

    Parameters
    ----------
    mask : ndarray of bool, any shape
        For example a (T, rows, cols) stack.

    Returns
    -------
    dict
        ``{"shape": [...], "encoding": "packbits+zlib+base64", "data": str}``
    """
    return {"shape": list(mask.shape), "encoding": "packbits+zlib+base64", "data": pack_mask(mask)}


def decode_mask(record: dict[str, Any]) -> npt.NDArray[np.bool_]:
    """Inverse of :func:`encode_mask`; returns a bool array of ``record["shape"]``."""
    if record.get("encoding") != "packbits+zlib+base64":
        raise PhantomError(
            f"mask encoding: expected 'packbits+zlib+base64', but got {record.get('encoding')!r}; "
            "the file was not written by this version of the phantom"
        )
    shape = tuple(int(n) for n in record["shape"])
    try:
        return unpack_mask(record["data"], shape)
    except ValueError as exc:
        raise PhantomError(f"mask: {exc}; the ground-truth file is damaged, regenerate it") from exc


@dataclass(frozen=True)
class Metrics:
    """Audit numbers from the geometric model (mm, degrees, seconds)."""

    tip_to_target_at_injection_start_mm: float | None
    tip_to_target_final_mm: float
    needle_angle_to_skin_deg: float | None
    max_spread_area_mm2: float | None
    min_tip_to_danger_mm: float | None
    needle_visible_to_injection_end_s: float | None
    frame_time_ms: float


@dataclass(frozen=True)
class GroundTruth:
    """What a synthetic clip shows, frame by frame.

    Attributes
    ----------
    seed : int
        Seed the clip was generated with.
    sop_instance_uid : str
    level, side, technique, needle_view : str
        Coded values (enum values of :mod:`archive.model`).
    target_name : str
    target_mm : list of float
        Target ``[x_mm, y_mm]`` in the model (probe centre on the skin = 0).
    targets : list of [row, col]
        Target pixel per frame (moves with the probe).
    needle : list of (list of [row, col]) or None
        Visible needle polyline per frame, superficial end first; ``None``
        while not visible. Out-of-plane: one point.
    events : dict of str to int or None
        Frame index (0-based) per :class:`~archive.model.ClipEvent` value.
    spread : ndarray of shape (T, rows, cols), bool
    danger : ndarray of shape (T, rows, cols), bool, or None
    danger_name : str
    calibration : dict
        Sequence of Ultrasound Regions item (DICOM keywords, cm) plus
        ``spacing_mm`` and fan geometry.
    banner : dict
        Banner rows and the burned-in text.
    metrics : Metrics
    shifts_px : list of [d_row, d_col]
        Probe motion per frame.
    """

    seed: int
    sop_instance_uid: str
    level: str
    side: str
    technique: str
    needle_view: str
    target_name: str
    target_mm: Point
    targets: list[Point]
    needle: list[list[Point] | None]
    events: dict[str, int | None]
    spread: npt.NDArray[np.bool_]
    danger: npt.NDArray[np.bool_] | None
    danger_name: str
    calibration: dict[str, Any]
    banner: dict[str, Any]
    metrics: Metrics
    shifts_px: list[list[int]] = field(default_factory=list)

    @property
    def tips(self) -> list[Point | None]:
        """Tip pixel per frame (deep end of the polyline), ``None`` if not visible."""
        return [line[-1] if line else None for line in self.needle]

    def to_json(self) -> str:
        """Serialise to JSON text (stable key order, masks compressed)."""
        record: dict[str, Any] = {
            "schema": SCHEMA,
            "seed": self.seed,
            "sop_instance_uid": self.sop_instance_uid,
            "level": self.level,
            "side": self.side,
            "technique": self.technique,
            "needle_view": self.needle_view,
            "target_name": self.target_name,
            "target_mm": self.target_mm,
            "targets": self.targets,
            "needle": self.needle,
            "events": self.events,
            "spread_mask": encode_mask(self.spread),
            "danger_mask": None if self.danger is None else encode_mask(self.danger),
            "danger_name": self.danger_name,
            "calibration": self.calibration,
            "banner": self.banner,
            "metrics": asdict(self.metrics),
            "shifts_px": self.shifts_px,
        }
        return json.dumps(record, indent=1, ensure_ascii=False, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        """Parse :meth:`to_json` output.

        Raises
        ------
        PhantomError
            If the schema is not :data:`SCHEMA`.
        """
        record = json.loads(text)
        if record.get("schema") != SCHEMA:
            raise PhantomError(
                f"ground truth schema: expected {SCHEMA!r}, but got {record.get('schema')!r}; "
                "regenerate the clip with this version"
            )
        danger = record["danger_mask"]
        return cls(
            seed=int(record["seed"]),
            sop_instance_uid=record["sop_instance_uid"],
            level=record["level"],
            side=record["side"],
            technique=record["technique"],
            needle_view=record["needle_view"],
            target_name=record["target_name"],
            target_mm=record["target_mm"],
            targets=record["targets"],
            needle=record["needle"],
            events=record["events"],
            spread=decode_mask(record["spread_mask"]),
            danger=None if danger is None else decode_mask(danger),
            danger_name=record["danger_name"],
            calibration=record["calibration"],
            banner=record["banner"],
            metrics=Metrics(**record["metrics"]),
            shifts_px=record["shifts_px"],
        )

    @classmethod
    def read(cls, path: Path) -> GroundTruth:
        """Read a ``.json`` file written by :func:`archive.phantom.write_clip`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
