"""De-identification of ultrasound clips (PS3.15 Annex E, Basic Profile and Clean Pixel Data).

Pure library code: the export command and its writers call
:func:`deidentify_dataset` with a :class:`DeidOptions` built from the
configuration. See docs/deidentification.md for the rules and their limits.
"""

from archive.research.deid.apply import DeidResult, deidentify_dataset, patient_key
from archive.research.deid.dates import date_shift_days
from archive.research.deid.options import DeidOptions
from archive.research.deid.pixels import blank_outside_regions, clean_pixel_data, tissue_regions
from archive.research.deid.profile import Action, BasicProfile, ProfileRule, choose_action, load_basic_profile
from archive.research.deid.uids import PseudonymKind, pseudonym, replace_uid

__all__ = [
    "Action",
    "BasicProfile",
    "DeidOptions",
    "DeidResult",
    "ProfileRule",
    "PseudonymKind",
    "blank_outside_regions",
    "choose_action",
    "clean_pixel_data",
    "date_shift_days",
    "deidentify_dataset",
    "load_basic_profile",
    "patient_key",
    "pseudonym",
    "replace_uid",
    "tissue_regions",
]
