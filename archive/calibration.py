"""Pixel to millimetre conversion from the Sequence of Ultrasound Regions.

Every length, area and angle the archive reports in mm, mm² or degrees comes
from this module. The only source of calibration is the Sequence of Ultrasound
Regions (0018,6011) of the US Region Calibration module: there is no fallback
to Pixel Spacing (0028,0030) or Imager Pixel Spacing for ultrasound, and no
default spacing. An image without regions is *uncalibrated*, and asking it for
millimetres raises :class:`~archive.errors.CalibrationError`.

Conventions
-----------
Points are ``(row, col)`` in pixel units, floats allowed (sub-pixel), in the
order napari uses. DICOM X is the column, DICOM Y the row. Pixel ``k`` is
centred on ``k`` and covers ``[k - 0.5, k + 0.5)``, so a point belongs to a
region whose inclusive rectangle is ``MinX0..MaxX1`` when
``MinX0 - 0.5 <= col < MaxX1 + 0.5`` (likewise for rows).

For a region in centimetres (Physical Units 3)::

    x_mm = 10 * (RefPhysX + (x - (MinX0 + RefPixX0)) * DeltaX)
    y_mm = 10 * (RefPhysY + (y - (MinY0 + RefPixY0)) * DeltaY)

and a distance is ``10 * hypot(dx * DeltaX, dy * DeltaY)``. Deltas may be
negative (an axis that runs against the pixel index); distances and areas use
their absolute values.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from archive.errors import CalibrationError

logger = logging.getLogger(__name__)

#: RegionSpatialFormat (0018,6012) value of a 2D (B-mode geometry) region.
SPATIAL_FORMAT_2D = 1
#: RegionDataType (0018,6014) value of tissue (B-mode) data.
DATA_TYPE_TISSUE = 1
#: PhysicalUnitsX/YDirection (0018,6024 / 0018,6026) value of centimetres.
UNITS_CM = 3

_MM_PER_CM = 10.0

_REQUIRED = (
    ("RegionLocationMinX0", "(0018,6018)"),
    ("RegionLocationMinY0", "(0018,601A)"),
    ("RegionLocationMaxX1", "(0018,601C)"),
    ("RegionLocationMaxY1", "(0018,601E)"),
    ("RegionSpatialFormat", "(0018,6012)"),
    ("RegionDataType", "(0018,6014)"),
    ("PhysicalUnitsXDirection", "(0018,6024)"),
    ("PhysicalUnitsYDirection", "(0018,6026)"),
    ("PhysicalDeltaX", "(0018,602C)"),
    ("PhysicalDeltaY", "(0018,602E)"),
)

Point = tuple[float, float]


def _optional(item: Dataset, keyword: str, default: Any) -> Any:
    value = item.get(keyword)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of the Sequence of Ultrasound Regions (0018,6011).

    Parameters
    ----------
    min_x0, min_y0, max_x1, max_y1 : int
        Inclusive pixel rectangle (columns ``min_x0..max_x1``, rows
        ``min_y0..max_y1``).
    spatial_format : int
        RegionSpatialFormat; 1 is 2D, 2 M-mode, 3 spectral, 4 wave form.
    data_type : int
        RegionDataType; 1 is tissue, 2 colour flow, 3 PW spectral Doppler, ...
    units_x, units_y : int
        PhysicalUnitsX/YDirection; 3 is cm, 4 seconds, 7 cm/s.
    delta_x_cm, delta_y_cm : float
        Physical size of one pixel step along X (columns) and Y (rows), in the
        region's units (cm for a 2D region); may be negative.
    ref_pixel_x0, ref_pixel_y0 : int
        Reference pixel, as an offset from the region's min corner; 0 when
        absent.
    ref_physical_x, ref_physical_y : float
        Physical value at the reference pixel, in the region's units; 0.0 when
        absent.
    """

    min_x0: int
    min_y0: int
    max_x1: int
    max_y1: int
    spatial_format: int
    data_type: int
    units_x: int
    units_y: int
    delta_x_cm: float
    delta_y_cm: float
    ref_pixel_x0: int = 0
    ref_pixel_y0: int = 0
    ref_physical_x: float = 0.0
    ref_physical_y: float = 0.0

    @classmethod
    def from_item(cls, item: Dataset) -> UltrasoundRegion:
        """Read one item of the Sequence of Ultrasound Regions.

        Parameters
        ----------
        item : pydicom.dataset.Dataset
            An item of (0018,6011).

        Returns
        -------
        UltrasoundRegion

        Raises
        ------
        CalibrationError
            If a Type 1 attribute of the item (location, format, data type,
            units or deltas) is missing or empty, or the rectangle's max corner
            lies before its min corner.
        """
        missing = [f"{kw} {tag}" for kw, tag in _REQUIRED if item.get(kw) in (None, "")]
        if missing:
            raise CalibrationError(
                "Sequence of Ultrasound Regions item: expected RegionLocation*, RegionSpatialFormat, "
                f"RegionDataType, PhysicalUnits*Direction and PhysicalDelta*, but {', '.join(missing)} "
                "missing; the region cannot be used for measurement, fix the file's calibration"
            )
        region = cls(
            min_x0=int(item.RegionLocationMinX0),
            min_y0=int(item.RegionLocationMinY0),
            max_x1=int(item.RegionLocationMaxX1),
            max_y1=int(item.RegionLocationMaxY1),
            spatial_format=int(item.RegionSpatialFormat),
            data_type=int(item.RegionDataType),
            units_x=int(item.PhysicalUnitsXDirection),
            units_y=int(item.PhysicalUnitsYDirection),
            delta_x_cm=float(item.PhysicalDeltaX),
            delta_y_cm=float(item.PhysicalDeltaY),
            ref_pixel_x0=int(_optional(item, "ReferencePixelX0", 0)),
            ref_pixel_y0=int(_optional(item, "ReferencePixelY0", 0)),
            ref_physical_x=float(_optional(item, "ReferencePixelPhysicalValueX", 0.0)),
            ref_physical_y=float(_optional(item, "ReferencePixelPhysicalValueY", 0.0)),
        )
        if region.max_x1 < region.min_x0 or region.max_y1 < region.min_y0:
            raise CalibrationError(
                "Sequence of Ultrasound Regions item: expected RegionLocationMaxX1/MaxY1 >= MinX0/MinY0, "
                f"but got cols {region.min_x0}..{region.max_x1}, rows {region.min_y0}..{region.max_y1}; "
                "the region is malformed, fix the file's calibration"
            )
        return region

    @property
    def is_tissue_2d(self) -> bool:
        """True for a 2D region of tissue data (spatial format 1, data type 1)."""
        return self.spatial_format == SPATIAL_FORMAT_2D and self.data_type == DATA_TYPE_TISSUE

    @property
    def is_cm(self) -> bool:
        """True when both axes are in centimetres (Physical Units 3)."""
        return self.units_x == UNITS_CM and self.units_y == UNITS_CM

    @property
    def area_px(self) -> int:
        """Number of pixels in the region's rectangle."""
        return (self.max_x1 - self.min_x0 + 1) * (self.max_y1 - self.min_y0 + 1)

    def describe(self) -> str:
        """A short human description, used in error messages."""
        return (
            f"rows {self.min_y0}..{self.max_y1}, cols {self.min_x0}..{self.max_x1}, "
            f"spatial format {self.spatial_format}, data type {self.data_type}, "
            f"units ({self.units_x}, {self.units_y})"
        )

    def contains(self, row: float, col: float) -> bool:
        """Whether the point ``(row, col)`` lies in this region's rectangle.

        A pixel ``k`` covers ``[k - 0.5, k + 0.5)``, so sub-pixel points up to
        half a pixel outside the inclusive rectangle's pixel centres belong to it.
        """
        return self.min_x0 - 0.5 <= col < self.max_x1 + 0.5 and self.min_y0 - 0.5 <= row < self.max_y1 + 0.5

    def require_cm(self) -> None:
        """Raise :class:`CalibrationError` unless both axes are in centimetres."""
        if not self.is_cm:
            raise CalibrationError(
                f"ultrasound region ({self.describe()}): expected physical units 3 (cm) on both axes, "
                f"but got X {self.units_x} and Y {self.units_y}; lengths in mm can only be measured "
                "in a 2D region calibrated in cm"
            )

    def to_mm(self, row: float, col: float) -> tuple[float, float]:
        """Physical position of a pixel point, in mm.

        The point need not lie inside the region (so the image origin can be
        placed, e.g. as a napari layer translation); :meth:`Calibration.point_mm`
        checks containment.

        Parameters
        ----------
        row, col : float
            Pixel coordinates (sub-pixel allowed).

        Returns
        -------
        y_mm, x_mm : float
            Position along the row direction and the column direction, in mm.

        Raises
        ------
        CalibrationError
            If the region's units are not centimetres.
        """
        self.require_cm()
        x_mm = _MM_PER_CM * (
            self.ref_physical_x + (col - (self.min_x0 + self.ref_pixel_x0)) * self.delta_x_cm
        )
        y_mm = _MM_PER_CM * (
            self.ref_physical_y + (row - (self.min_y0 + self.ref_pixel_y0)) * self.delta_y_cm
        )
        return y_mm, x_mm

    @property
    def pixel_size_mm(self) -> tuple[float, float]:
        """``(row spacing, column spacing)`` in mm, both positive.

        Raises
        ------
        CalibrationError
            If the region's units are not centimetres.
        """
        self.require_cm()
        return abs(self.delta_y_cm) * _MM_PER_CM, abs(self.delta_x_cm) * _MM_PER_CM


@dataclass(frozen=True)
class Calibration:
    """All ultrasound regions of one image, and measurements across them.

    Measurements use only 2D tissue regions in centimetres. When 2D tissue
    regions overlap, a point (or a set of points, or a mask) is measured in
    the *smallest* 2D tissue region that contains all of it; ties go to the
    region listed first. Points that no single 2D tissue region contains
    together cannot be measured together.

    Parameters
    ----------
    regions : tuple of UltrasoundRegion
        In the order of the Sequence of Ultrasound Regions.
    """

    regions: tuple[UltrasoundRegion, ...]

    @classmethod
    def from_dataset(cls, ds: Dataset) -> Calibration:
        """Read the Sequence of Ultrasound Regions (0018,6011) of a dataset.

        Works on a header-only dataset (``dcmread(..., stop_before_pixels=True)``).
        Pixel Spacing (0028,0030) is never used: ultrasound without regions is
        uncalibrated.

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            The image's dataset; may be header-only.

        Returns
        -------
        Calibration

        Raises
        ------
        CalibrationError
            If the sequence is absent or empty, or an item lacks a required
            attribute.
        """
        items = ds.get("SequenceOfUltrasoundRegions")
        if not items:
            sop = ds.get("SOPInstanceUID", "<no SOPInstanceUID>")
            raise CalibrationError(
                f"image {sop}: expected a Sequence of Ultrasound Regions (0018,6011) to convert pixels "
                f"to mm, but it is {'empty' if items is not None else 'absent'}; the image is "
                "uncalibrated (Pixel Spacing is not used for ultrasound), so measure in pixels or "
                "export the clip from the scanner with region calibration"
            )
        return cls(regions=tuple(UltrasoundRegion.from_item(item) for item in items))

    def _describe_regions(self, row: float, col: float) -> str:
        holders = [f"#{i} ({r.describe()})" for i, r in enumerate(self.regions) if r.contains(row, col)]
        return "it lies in " + "; ".join(holders) if holders else "it lies in no region"

    def _tissue_regions_containing(self, points: list[Point]) -> list[UltrasoundRegion]:
        found = [r for r in self.regions if r.is_tissue_2d and all(r.contains(y, x) for y, x in points)]
        return sorted(found, key=lambda r: r.area_px)

    def region_at(self, row: float, col: float) -> UltrasoundRegion:
        """The 2D tissue region containing ``(row, col)``.

        Overlapping 2D tissue regions: the smallest one wins (ties: the first
        listed).

        Raises
        ------
        CalibrationError
            If no 2D tissue region contains the point.
        """
        found = self._tissue_regions_containing([(row, col)])
        if not found:
            raise CalibrationError(
                f"point (row {row}, col {col}): expected it inside a 2D tissue region "
                f"(spatial format 1, data type 1), but {self._describe_regions(row, col)}; "
                "mark points inside the B-mode image area"
            )
        return found[0]

    def region_for_points(self, *points: Point) -> UltrasoundRegion:
        """The smallest 2D tissue region containing every one of ``points``.

        Parameters
        ----------
        *points : tuple of float
            ``(row, col)`` pixel points, at least one.

        Raises
        ------
        CalibrationError
            If some point lies in no 2D tissue region, or no single 2D tissue
            region contains them all.
        """
        if not points:
            raise ValueError("points: expected at least one (row, col) point, but got none")
        for row, col in points:
            self.region_at(row, col)
        found = self._tissue_regions_containing(list(points))
        if not found:
            where = "; ".join(f"({r}, {c}): {self._describe_regions(r, c)}" for r, c in points)
            raise CalibrationError(
                "points: expected them all inside one 2D tissue region, but they lie in different "
                f"regions ({where}); a distance across regions has no physical meaning, "
                "measure within one region"
            )
        return found[0]

    def point_mm(self, row: float, col: float) -> tuple[float, float]:
        """Physical position ``(y_mm, x_mm)`` of a point in its 2D tissue region.

        Raises
        ------
        CalibrationError
            If the point lies in no 2D tissue region or the region is not in cm.
        """
        return self.region_at(row, col).to_mm(row, col)

    def vector_mm(self, start: Point, end: Point) -> tuple[float, float]:
        """Displacement ``(dy_mm, dx_mm)`` from ``start`` to ``end``.

        Both points must lie in one 2D tissue region in cm. Signs follow the
        region's physical axes (a negative delta flips them).

        Raises
        ------
        CalibrationError
            If the points lie in different regions, outside 2D tissue regions,
            or the region is not in cm.
        """
        region = self.region_for_points(start, end)
        y0, x0 = region.to_mm(*start)
        y1, x1 = region.to_mm(*end)
        return y1 - y0, x1 - x0

    def distance_mm(self, p: Point, q: Point) -> float:
        """Distance in mm between two ``(row, col)`` points of one 2D tissue region.

        Computed as ``10 * hypot(d_col * DeltaX, d_row * DeltaY)``.

        Raises
        ------
        CalibrationError
            If the points lie in different regions, outside 2D tissue regions,
            or the region's units are not cm.
        """
        dy_mm, dx_mm = self.vector_mm(p, q)
        return math.hypot(dy_mm, dx_mm)

    def region_for_mask(self, mask: NDArray[np.bool_]) -> UltrasoundRegion:
        """The smallest 2D tissue region holding every True pixel of ``mask``.

        Parameters
        ----------
        mask : ndarray of shape (H, W), bool
            Must have at least one True pixel.

        Raises
        ------
        ValueError
            If ``mask`` is not 2-D or has no True pixel.
        CalibrationError
            If no single 2D tissue region holds all True pixels.
        """
        rows, cols = _true_pixels(mask)
        if rows.size == 0:
            raise ValueError("mask: expected at least one True pixel, but the mask is empty")
        corners: list[Point] = [
            (float(rows.min()), float(cols.min())),
            (float(rows.max()), float(cols.max())),
        ]
        found = self._tissue_regions_containing(corners)
        if not found:
            raise CalibrationError(
                f"mask: expected all True pixels inside one 2D tissue region, but they span rows "
                f"{rows.min()}..{rows.max()}, cols {cols.min()}..{cols.max()}, which no 2D tissue region "
                f"holds (regions: {[r.describe() for r in self.regions]}); restrict the mask to the "
                "B-mode image area"
            )
        return found[0]

    def area_mm2(self, mask: NDArray[np.bool_]) -> float:
        """Area in mm² of the True pixels of a mask.

        Each pixel counts ``100 * |DeltaX * DeltaY|`` mm².

        Parameters
        ----------
        mask : ndarray of shape (H, W), bool
            The region to measure, e.g. an injectate spread.

        Returns
        -------
        float
            0.0 for an empty mask.

        Raises
        ------
        ValueError
            If ``mask`` is not 2-D.
        CalibrationError
            If the True pixels are not all inside one 2D tissue region in cm.
        """
        rows, _ = _true_pixels(mask)
        if rows.size == 0:
            return 0.0
        row_mm, col_mm = self.region_for_mask(mask).pixel_size_mm
        return rows.size * row_mm * col_mm

    @property
    def primary_region(self) -> UltrasoundRegion:
        """The largest 2D tissue region in cm (ties: first listed); used for layer scale.

        Raises
        ------
        CalibrationError
            If there is no 2D tissue region in cm.
        """
        usable = [r for r in self.regions if r.is_tissue_2d and r.is_cm]
        if not usable:
            raise CalibrationError(
                "calibration: expected at least one 2D tissue region in cm, but the regions are "
                f"{[r.describe() for r in self.regions]}; the image cannot be measured in mm"
            )
        return max(usable, key=lambda r: r.area_px)

    @property
    def pixel_size_mm(self) -> tuple[float, float]:
        """``(row spacing, column spacing)`` in mm of the primary region."""
        return self.primary_region.pixel_size_mm


def _true_pixels(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask: expected a 2-D (H, W) boolean array, but got shape {array.shape}")
    rows, cols = np.nonzero(array)
    return rows, cols


def calibration_or_none(ds: Dataset) -> Calibration | None:
    """The image's calibration, or ``None`` when it cannot give millimetres.

    For code that must cope with uncalibrated clips (the annotator shows
    "uncalibrated"). ``None`` when the Sequence of Ultrasound Regions is absent,
    empty or malformed, or holds no 2D tissue region in cm; the reason is
    logged at INFO level.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        May be header-only.
    """
    try:
        calibration = Calibration.from_dataset(ds)
        _ = calibration.primary_region  # raises when no region is measurable in mm
    except CalibrationError as exc:
        logger.info("uncalibrated image: %s", exc)
        return None
    return calibration
