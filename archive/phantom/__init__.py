"""Synthetic ultrasound clips of spinal injections with ground truth (the phantom).

Deterministic: the same :class:`ClipSpec` and seed give the same DICOM file
and JSON ground truth. The generator is independent of the archive's
calibration and metrics code; it *puts in* the truth those are tested against.
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
