"""Assisted review: needle and injectate-spread proposals computed from the pixels.

Pure functions (arrays in, marks out). :func:`propose_clip` (a stack) and
:func:`propose_frames` (frames decoded one at a time) are the entry points;
the method and its measured accuracy are in ``docs/proposals.md``.
"""

from archive.analysis.proposals.api import METHOD, propose_clip, propose_frames
from archive.analysis.proposals.errors import ProposalCancelled, ProposalInputError
from archive.analysis.proposals.params import DEFAULTS, PIXEL_DEFAULTS, MethodParameters
from archive.analysis.proposals.results import ClipProposal, FrameProposal, SpreadProposal

__all__ = [
    "DEFAULTS",
    "METHOD",
    "PIXEL_DEFAULTS",
    "ClipProposal",
    "FrameProposal",
    "MethodParameters",
    "ProposalCancelled",
    "ProposalInputError",
    "SpreadProposal",
    "propose_clip",
    "propose_frames",
]
