"""Synthetic ultrasound clips of spinal injections with ground truth (the phantom).

Deterministic: the same :class:`ClipSpec` and seed give the same DICOM file
and JSON ground truth. The generator is independent of the archive's
calibration and metrics code; it *puts in* the truth those are tested against.

The injectate is fluid placed on the bone: it pools in the soft tissue above
and around the bone surface and never inside the bone or below its surface.
The course's pool ellipse is therefore clipped to soft tissue
(:meth:`~archive.phantom.anatomy.Anatomy.soft_tissue`) in the ground truth,
in the rendering and in ``max_spread_area_mm2`` alike; fluid is anechoic, so
wherever the beam reaches it the pool is drawn hypoechoic.
"""

from archive.phantom.cohort import CohortClip, generate_cohort
from archive.phantom.generate import generate_clip, write_clip
from archive.phantom.samples import write_samples
from archive.phantom.spec import ClipSpec, Descriptions, Encoding, PatientIdentity
from archive.phantom.truth import GroundTruth, Metrics, decode_mask, encode_mask

__all__ = [
    "ClipSpec",
    "CohortClip",
    "Descriptions",
    "Encoding",
    "GroundTruth",
    "Metrics",
    "PatientIdentity",
    "decode_mask",
    "encode_mask",
    "generate_clip",
    "generate_cohort",
    "write_clip",
    "write_samples",
]
