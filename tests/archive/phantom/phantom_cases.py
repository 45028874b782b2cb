"""Specs of the small synthetic clips shared by the phantom tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archive.model import NeedleView, Side, SpinalLevel, Technique
from archive.phantom import ClipSpec, Descriptions, Encoding, GroundTruth

SMALL = {"rows": 220, "cols": 300, "frames": 16, "frame_time_ms": 50.0}


@dataclass(frozen=True)
class Generated:
    spec: ClipSpec
    dcm: Path
    truth: GroundTruth


SPECS: dict[str, ClipSpec] = {
    "l4_mono_in_plane": ClipSpec(
        level=SpinalLevel.L4, side=Side.RIGHT, encoding=Encoding.EXPLICIT_MONO, **SMALL
    ),
    "l5_rgb_out_of_plane": ClipSpec(
        level=SpinalLevel.L5,
        side=Side.LEFT,
        needle_view=NeedleView.OUT_OF_PLANE,
        encoding=Encoding.EXPLICIT_RGB,
        **SMALL,
    ),
    "l3_jpeg_in_plane": ClipSpec(
        level=SpinalLevel.L3, needle_angle_deg=28.0, encoding=Encoding.JPEG_BASELINE, **SMALL
    ),
    "c4_danger_chinese": ClipSpec(
        level=SpinalLevel.C4,
        danger=True,
        depth_mm=45.0,
        technique=Technique.UNKNOWN,
        descriptions=Descriptions(
            study="颈椎 脊神经后内侧支阻滞",
            series="颈椎 C4/5 右 平面内",
            performed_step="C4/5 MBB",
            protocol="MSK 颈椎",
            body_part="CSPINE",
            character_set="ISO_IR 192",
        ),
        **SMALL,
    ),
    "l4_single_frame": ClipSpec(level=SpinalLevel.L4, rows=220, cols=300, frames=1),
}
