"""Patient-level train/validation/test split of a research dataset, from a seed.

Every clip of a patient goes to the split of the patient, so no patient's
anatomy is seen both in training and in evaluation. A patient's split depends
only on the seed and the patient's pseudonym:

1. ``digest = SHA-256(f"{seed}:{pseudonym}")`` (UTF-8);
2. ``u = int(digest[:8] as big-endian) / 2**64``, a number uniform in [0, 1);
3. train if ``u < train``, validation if ``u < train + validation``, else test.

The assignment is therefore independent of the order in which clips are
exported and of which other patients are in the export, so a patient keeps
its split when the dataset is exported again with more patients and the same
seed. The price is that the fractions hold only on average: with few patients
the counts per split scatter around the fractions (binomially).
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass

from archive.errors import ExportError


class Split(enum.StrEnum):
    """The part of a research dataset a patient's clips belong to."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


@dataclass(frozen=True)
class SplitFractions:
    """Expected fractions of patients in train, validation and test.

    Parameters
    ----------
    train, validation, test : float
        Non-negative, summing to 1 (within 1e-9).

    Raises
    ------
    ExportError
        If a fraction is negative or not finite, or they do not sum to 1.
    """

    train: float = 0.7
    validation: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        values = (self.train, self.validation, self.test)
        if any(not math.isfinite(v) or v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-9:
            raise ExportError(
                f"split fractions: expected three non-negative numbers summing to 1 "
                f"(train, validation, test), but got {values}; e.g. (0.7, 0.15, 0.15)"
            )

    @classmethod
    def of(cls, fractions: tuple[float, float, float] | SplitFractions) -> SplitFractions:
        """Convert a ``(train, validation, test)`` tuple (or an instance) to fractions."""
        if isinstance(fractions, SplitFractions):
            return fractions
        if len(fractions) != 3:
            raise ExportError(
                f"split fractions: expected (train, validation, test), but got {len(fractions)} values"
            )
        return cls(float(fractions[0]), float(fractions[1]), float(fractions[2]))

    def as_tuple(self) -> tuple[float, float, float]:
        """``(train, validation, test)``."""
        return (self.train, self.validation, self.test)


def split_draw(seed: int, patient_pseudonym: str) -> float:
    """The patient's uniform draw in [0, 1) that decides its split (step 1–2 of the module doc).

    Parameters
    ----------
    seed : int
        Seed of the export.
    patient_pseudonym : str
        The patient's pseudonymous identifier.

    Returns
    -------
    float
        In ``[0, 1)``.
    """
    digest = hashlib.sha256(f"{int(seed)}:{patient_pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(seed: int, patient_pseudonym: str, fractions: SplitFractions) -> Split:
    """The split of all clips of one patient.

    Parameters
    ----------
    seed : int
        Seed of the export; the same seed gives the same assignment.
    patient_pseudonym : str
        The patient's pseudonymous identifier (never the real patient ID).
    fractions : SplitFractions
        Expected fractions of patients per split.

    Returns
    -------
    Split

    Raises
    ------
    ExportError
        If the pseudonym is empty.
    """
    if not str(patient_pseudonym).strip():
        raise ExportError(
            "split: expected a patient pseudonym to assign the patient's clips to a split, but got an "
            "empty one; every exported clip needs its patient's pseudonym"
        )
    draw = split_draw(seed, patient_pseudonym)
    if draw < fractions.train:
        return Split.TRAIN
    if draw < fractions.train + fractions.validation:
        return Split.VALIDATION
    return Split.TEST
