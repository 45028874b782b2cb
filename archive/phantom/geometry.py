"""Image layout of a synthetic clip: banner, convex-probe fan, region, mm ↔ pixel.

The model works in millimetres: ``x_mm`` lateral (0 at the probe centre,
positive to the image right), ``y_mm`` depth below the skin line (0 at the top
of the 2D region). The convex probe's virtual apex lies ``probe_radius_mm``
above the skin. Pixels are full-image ``(row, col)`` floats; one isotropic
spacing maps between them. The DICOM Sequence of Ultrasound Regions written
for a clip reproduces exactly this mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Height of the header banner with the burned-in patient text, in pixels.
BANNER_ROWS = 30
#: Gap between the banner and the 2D region, in pixels.
BANNER_GAP = 4
#: Width of the depth-scale margin right of the region, in pixels.
SCALE_COLS = 34
#: Radius of the curvilinear (convex) transducer face, mm.
PROBE_RADIUS_MM = 50.0
#: Half the sector angle of the fan, degrees.
FAN_HALF_ANGLE_DEG = 26.0


@dataclass(frozen=True)
class Layout:
    """Where everything lies in the image and how pixels map to millimetres.

    Attributes
    ----------
    rows, cols : int
        Image size.
    spacing_mm : float
        Pixel size in both directions, mm per pixel.
    region : tuple of int
        ``(min_col, min_row, max_col, max_row)``, inclusive, of the 2D region.
    ref_col, ref_row : int
        Full-image pixel of the point ``x_mm = 0, y_mm = 0`` (probe centre on
        the skin line).
    depth_mm : float
        Imaging depth.
    """

    rows: int
    cols: int
    spacing_mm: float
    region: tuple[int, int, int, int]
    ref_col: int
    ref_row: int
    depth_mm: float
    probe_radius_mm: float = PROBE_RADIUS_MM
    half_angle_deg: float = FAN_HALF_ANGLE_DEG

    @property
    def region_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the region rectangle."""
        min_col, min_row, max_col, max_row = self.region
        return max_row - min_row + 1, max_col - min_col + 1

    def to_pixel(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """Full-image ``(row, col)`` of a point given in mm."""
        return self.ref_row + y_mm / self.spacing_mm, self.ref_col + x_mm / self.spacing_mm

    def to_mm(self, row: float, col: float) -> tuple[float, float]:
        """``(x_mm, y_mm)`` of a full-image pixel."""
        return (col - self.ref_col) * self.spacing_mm, (row - self.ref_row) * self.spacing_mm

    def in_fan(self, x_mm: npt.ArrayLike, y_mm: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether points (mm) lie inside the imaged sector.

        Parameters
        ----------
        x_mm, y_mm : array_like of float
            Same shape; lateral and depth coordinates.

        Returns
        -------
        ndarray of bool, same shape
        """
        x = np.asarray(x_mm, dtype=np.float64)
        y = np.asarray(y_mm, dtype=np.float64) + self.probe_radius_mm
        radius = np.hypot(x, y)
        angle = np.degrees(np.arctan2(x, y))
        inside: npt.NDArray[np.bool_] = (
            (radius >= self.probe_radius_mm)
            & (radius <= self.probe_radius_mm + self.depth_mm)
            & (np.abs(angle) <= self.half_angle_deg)
        )
        return inside

    def region_grid_mm(self, margin: int = 0) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Mm coordinates of every region pixel, padded by ``margin`` pixels.

        Returns
        -------
        x_mm, y_mm : ndarray of shape (H + 2 margin, W + 2 margin), float32
        """
        min_col, min_row, _, _ = self.region
        height, width = self.region_shape
        rows = np.arange(-margin, height + margin, dtype=np.float64) + min_row
        cols = np.arange(-margin, width + margin, dtype=np.float64) + min_col
        x_mm = ((cols - self.ref_col) * self.spacing_mm).astype(np.float32)
        y_mm = ((rows - self.ref_row) * self.spacing_mm).astype(np.float32)
        grid_y, grid_x = np.meshgrid(y_mm, x_mm, indexing="ij")
        return grid_x, grid_y

    def fan_mask(self) -> npt.NDArray[np.bool_]:
        """The sector inside the region rectangle, shape (H, W), bool."""
        grid_x, grid_y = self.region_grid_mm()
        return self.in_fan(grid_x, grid_y)

    def calibration_record(self) -> dict[str, float | int]:
        """The Sequence of Ultrasound Regions item, as DICOM keyword → value (cm)."""
        min_col, min_row, max_col, max_row = self.region
        return {
            "RegionSpatialFormat": 1,
            "RegionDataType": 1,
            "RegionFlags": 0,
            "RegionLocationMinX0": min_col,
            "RegionLocationMinY0": min_row,
            "RegionLocationMaxX1": max_col,
            "RegionLocationMaxY1": max_row,
            "PhysicalUnitsXDirection": 3,
            "PhysicalUnitsYDirection": 3,
            "PhysicalDeltaX": self.spacing_mm / 10.0,
            "PhysicalDeltaY": self.spacing_mm / 10.0,
            "ReferencePixelX0": self.ref_col - min_col,
            "ReferencePixelY0": self.ref_row - min_row,
            "ReferencePixelPhysicalValueX": 0.0,
            "ReferencePixelPhysicalValueY": 0.0,
        }


def make_layout(rows: int, cols: int, depth_mm: float) -> Layout:
    """Fit the fan for ``depth_mm`` into a ``rows`` × ``cols`` image below the banner.

    Parameters
    ----------
    rows, cols : int
        Image size in pixels.
    depth_mm : float
        Imaging depth.

    Returns
    -------
    Layout
    """
    half_width_mm = (PROBE_RADIUS_MM + depth_mm) * math.sin(math.radians(FAN_HALF_ANGLE_DEG))
    top = BANNER_ROWS + BANNER_GAP
    avail_rows = rows - top - 2
    avail_cols = cols - SCALE_COLS - 8
    spacing_mm = max(depth_mm / (avail_rows - 1), 2.0 * half_width_mm / (avail_cols - 1))
    height = math.ceil(depth_mm / spacing_mm) + 1
    half_cols = math.ceil(half_width_mm / spacing_mm)
    ref_col = 4 + (avail_cols - 1) // 2
    region = (ref_col - half_cols, top, ref_col + half_cols, top + height - 1)
    return Layout(
        rows=rows,
        cols=cols,
        spacing_mm=spacing_mm,
        region=region,
        ref_col=ref_col,
        ref_row=top,
        depth_mm=depth_mm,
    )
