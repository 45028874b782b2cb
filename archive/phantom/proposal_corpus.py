"""The two corpora the needle and spread proposals are measured on.

``phantom``: clips of :func:`archive.phantom.generate_clip` (convex probe,
banner, static speckle, probe motion) at several levels, sides and angles;
``hard``: :func:`archive.phantom.hard.hard_corpus`. Each case carries what
:func:`archive.analysis.proposals.propose_clip` needs (grey frames, spacing,
frame interval, region) and the :class:`~archive.phantom.scoring.ProposalTruth`
to score it. The tests use small clips; the benchmark 640×480.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from archive.model import NeedleView, Side, SpinalLevel
from archive.phantom.generate import generate_clip
from archive.phantom.hard import generate_hard_clip, hard_corpus
from archive.phantom.scoring import ProposalTruth, truth_from_hard, truth_from_phantom
from archive.phantom.spec import ClipSpec

#: (level, side, angle_deg, oblique) of the in-plane phantom clips.
PHANTOM_VIEWS = (
    (SpinalLevel.L4, Side.RIGHT, 35.0, False),
    (SpinalLevel.L3, Side.LEFT, 30.0, False),
    (SpinalLevel.L5, Side.RIGHT, 45.0, True),
    (SpinalLevel.C4, Side.LEFT, 40.0, False),
)
#: Levels of the out-of-plane phantom clips.
OUT_OF_PLANE_LEVELS = (SpinalLevel.L4, SpinalLevel.L5, SpinalLevel.L3)


@dataclass(frozen=True)
class Case:
    """One clip to propose on and its truth."""

    corpus: str
    name: str
    frames: npt.NDArray[np.uint8]
    spacing_mm: tuple[float, float]
    frame_interval_s: float
    region: tuple[int, int, int, int] | None
    approach: str
    truth: ProposalTruth


def phantom_cases(
    *, rows: int = 240, cols: int = 320, frames: int = 40, out_of_plane: bool = False
) -> list[Case]:
    """The phantom corpus: in-plane views (or out-of-plane levels), seeds 100 + index.

    Parameters
    ----------
    rows, cols, frames : int
        Clip size.
    out_of_plane : bool
        Out-of-plane clips instead of in-plane ones.

    Returns
    -------
    list of Case
    """
    views = (
        [(level, Side.RIGHT, 35.0, level is SpinalLevel.L5) for level in OUT_OF_PLANE_LEVELS]
        if out_of_plane
        else list(PHANTOM_VIEWS)
    )
    cases = []
    for k, (level, side, angle, oblique) in enumerate(views):
        spec = ClipSpec(
            level=level,
            side=side,
            needle_angle_deg=angle,
            needle_view=NeedleView.OUT_OF_PLANE if out_of_plane else NeedleView.IN_PLANE,
            oblique=oblique,
            frames=frames,
            rows=rows,
            cols=cols,
        )
        seed = (200 if out_of_plane else 100) + k
        dataset, truth = generate_clip(spec, seed)
        grey = dataset.pixel_array
        c = truth.calibration
        region = (
            int(c["RegionLocationMinY0"]),
            int(c["RegionLocationMinX0"]),
            int(c["RegionLocationMaxY1"]),
            int(c["RegionLocationMaxX1"]),
        )
        spacing = float(c["spacing_mm"])
        cases.append(
            Case(
                corpus="phantom",
                name=f"{level.value}-{side.laterality}-{angle:g}",
                frames=grey,
                spacing_mm=(spacing, spacing),
                frame_interval_s=spec.frame_time_ms / 1000.0,
                region=region,
                approach="out-of-plane" if out_of_plane else "in-plane",
                truth=truth_from_phantom(truth, grey),
            )
        )
    return cases


def hard_cases(*, rows: int = 200, cols: int = 260, frames: int = 40, spacing_mm: float = 0.2) -> list[Case]:
    """The hard corpus (:func:`archive.phantom.hard.hard_corpus`), seed = index."""
    cases = []
    for seed, (name, spec) in enumerate(
        hard_corpus(frames=frames, rows=rows, cols=cols, spacing_mm=spacing_mm)
    ):
        clip = generate_hard_clip(spec, seed)
        cases.append(
            Case(
                corpus="hard",
                name=name,
                frames=clip.frames,
                spacing_mm=clip.spacing_mm,
                frame_interval_s=clip.frame_interval_s,
                region=None,
                approach="in-plane",
                truth=truth_from_hard(clip),
            )
        )
    return cases
