"""The dataset card of a research export: what it is, how many, how made, how de-identified.

:class:`CardInfo` is what the person exporting says (title, source, the
selection used, the de-identification applied); :class:`DatasetCard` adds what
the writer counted. The card is stored twice: as attributes of the HDF5 file's
root (``card_json`` holds all of it, the other ``card_*`` attributes the
headline numbers for tools that only show attributes) and as a Markdown
sidecar file beside the dataset (:func:`card_markdown`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from archive.errors import ExportError


@dataclass(frozen=True)
class CardInfo:
    """What the person exporting says about the dataset.

    Parameters
    ----------
    title : str
        Short name, e.g. ``"Lumbar MBB clips, approved reviews, 2026"``.
    description : str
        What the dataset is for and what it contains.
    source : str
        Where the clips come from (site, scanner, study), without identifying
        any patient.
    selection : str
        How the clips were selected (the export filters, e.g.
        ``"--status approved --level L5"``).
    deidentification : tuple of str
        De-identification applied, one item per step (e.g. ``"PS3.15 Basic
        Application Level Confidentiality Profile"``, ``"Clean Pixel Data:
        pixels outside the 2D ultrasound regions set to 0"``).
    created_by : str
        Who made the export (a role or user name).
    """

    title: str
    description: str = ""
    source: str = ""
    selection: str = ""
    deidentification: tuple[str, ...] = ()
    created_by: str = ""

    def __post_init__(self) -> None:
        if not str(self.title).strip():
            raise ExportError("dataset card: expected a title naming the dataset, but got an empty one")
        object.__setattr__(self, "deidentification", tuple(str(s) for s in self.deidentification))


@dataclass(frozen=True)
class DatasetCard:
    """The complete dataset card: the exporter's :class:`CardInfo` plus counts.

    Parameters
    ----------
    info : CardInfo
        What the exporter said.
    created_utc : str
        ISO 8601 time the export finished, UTC.
    software : str
        ``"usarchive <version>"``.
    format_version : int
        Version of the HDF5 layout (docs/hdf5-layout.md).
    seed : int
        Seed of the patient-level split.
    split_fractions : tuple of float
        Expected ``(train, validation, test)`` fractions of patients.
    compression : str
        HDF5 filter of frames and masks (``"gzip"`` or ``"lzf"``).
    n_clips, n_patients, n_frames, n_annotated : int
        Counts over the whole file.
    clips_per_split, patients_per_split : mapping of str to int
        Counts by split name.
    clips_per_status : mapping of str to int
        Clips by review status (``"none"`` for clips without an annotation).
    not_pixel_cleaned : tuple of str
        Clip keys whose pixels were *not* cleaned (uncalibrated clips exported
        with explicit permission); they may still show burned-in text.
    untimed : tuple of str
        Clip keys without frame timing (no Cine module): their
        ``frame_times_ms`` are NaN and time metrics are not assessable.
    """

    info: CardInfo
    created_utc: str
    software: str
    format_version: int
    seed: int
    split_fractions: tuple[float, float, float]
    compression: str
    n_clips: int
    n_patients: int
    n_frames: int
    n_annotated: int
    clips_per_split: Mapping[str, int] = field(default_factory=dict)
    patients_per_split: Mapping[str, int] = field(default_factory=dict)
    clips_per_status: Mapping[str, int] = field(default_factory=dict)
    not_pixel_cleaned: tuple[str, ...] = ()
    untimed: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The card as canonical JSON (sorted keys)."""
        data = asdict(self)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> DatasetCard:
        """Rebuild a card from :meth:`to_json` output.

        Raises
        ------
        ExportError
            If ``text`` is not a card's JSON.
        """
        try:
            data: dict[str, Any] = json.loads(text)
            info_data = data["info"]
            return cls(
                info=CardInfo(**{**info_data, "deidentification": tuple(info_data["deidentification"])}),
                created_utc=str(data["created_utc"]),
                software=str(data["software"]),
                format_version=int(data["format_version"]),
                seed=int(data["seed"]),
                split_fractions=(
                    float(data["split_fractions"][0]),
                    float(data["split_fractions"][1]),
                    float(data["split_fractions"][2]),
                ),
                compression=str(data["compression"]),
                n_clips=int(data["n_clips"]),
                n_patients=int(data["n_patients"]),
                n_frames=int(data["n_frames"]),
                n_annotated=int(data["n_annotated"]),
                clips_per_split={str(k): int(v) for k, v in data["clips_per_split"].items()},
                patients_per_split={str(k): int(v) for k, v in data["patients_per_split"].items()},
                clips_per_status={str(k): int(v) for k, v in data["clips_per_status"].items()},
                not_pixel_cleaned=tuple(str(k) for k in data["not_pixel_cleaned"]),
                untimed=tuple(str(k) for k in data.get("untimed", ())),
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ExportError(
                f"dataset card: expected the JSON written by usarchive's HDF5 export, but it cannot be "
                f"read ({exc!r}); was the file written by another program?"
            ) from exc

    def attributes(self) -> dict[str, Any]:
        """HDF5 root attributes: ``card_json`` plus headline values as ``card_<name>``."""
        return {
            "card_json": self.to_json(),
            "card_title": self.info.title,
            "card_description": self.info.description,
            "card_created_utc": self.created_utc,
            "card_software": self.software,
            "card_n_clips": self.n_clips,
            "card_n_patients": self.n_patients,
            "card_n_frames": self.n_frames,
            "card_deidentification": "\n".join(self.info.deidentification),
            "card_n_not_pixel_cleaned": len(self.not_pixel_cleaned),
            "card_n_untimed": len(self.untimed),
        }


def _table(counts: Mapping[str, int]) -> str:
    if not counts:
        return "(none)\n"
    rows = "".join(f"| {name} | {count} |\n" for name, count in counts.items())
    return "| | count |\n|---|---|\n" + rows


def card_markdown(card: DatasetCard, dataset_name: str) -> str:
    """The dataset card as a Markdown document for the sidecar file.

    Parameters
    ----------
    card : DatasetCard
        The card.
    dataset_name : str
        File name of the HDF5 dataset the card describes.

    Returns
    -------
    str
        Markdown text ending in a newline.
    """
    info = card.info
    deid = "".join(f"- {step}\n" for step in info.deidentification) or "- (none stated)\n"
    train, validation, test = card.split_fractions
    if card.not_pixel_cleaned:
        keys = "".join(f"- `{key}`\n" for key in card.not_pixel_cleaned)
        cleaning = (
            f"**{len(card.not_pixel_cleaned)} clip(s) are NOT pixel-cleaned** (no 2D ultrasound "
            "region to keep; exported with explicit permission). Their frames may show burned-in "
            "text such as a patient banner; check them before sharing:\n\n" + keys
        )
    else:
        cleaning = "Every clip is pixel-cleaned: all pixels outside the 2D ultrasound regions are 0.\n"
    if card.untimed:
        timing = (
            f"**{len(card.untimed)} clip(s) have no frame timing** (no Frame Time, Frame Time Vector "
            "or Cine Rate): their `frame_times_ms` are NaN, metadata `timed` is false and their time "
            "metrics are not assessable:\n\n" + "".join(f"- `{key}`\n" for key in card.untimed)
        )
    else:
        timing = "Every clip has frame timing.\n"
    return (
        f"# Dataset card: {info.title}\n\n"
        f"Dataset file: `{dataset_name}` (layout: docs/hdf5-layout.md, format version "
        f"{card.format_version})\n\n"
        "Frame numbers (events, adverse events, metric frames, breaches) are 1-based, as the "
        "review widget shows them: frame n is at index n - 1 of every per-frame array.\n\n"
        f"## What\n\n{info.description or '(no description given)'}\n\n"
        f"Source: {info.source or '(not stated)'}\n\n"
        f"## How many\n\n"
        f"- clips: {card.n_clips}\n- patients: {card.n_patients}\n- frames: {card.n_frames}\n"
        f"- clips with a reviewer's annotation: {card.n_annotated}\n\n"
        f"Clips per split:\n\n{_table(card.clips_per_split)}\n"
        f"Patients per split:\n\n{_table(card.patients_per_split)}\n"
        f"Clips per review status:\n\n{_table(card.clips_per_status)}\n"
        f"## How made\n\n"
        f"- created (UTC): {card.created_utc} by {info.created_by or '(not stated)'}\n"
        f"- software: {card.software}\n"
        f"- selection: {info.selection or '(all clips)'}\n"
        f"- split: patient-level, seed {card.seed}, expected fractions train {train:g} / "
        f"validation {validation:g} / test {test:g} (SHA-256 of seed and pseudonym; see "
        f"docs/hdf5-layout.md)\n"
        f"- compression of frames and masks: {card.compression}\n"
        "- colour frames are stored as RGB (palette applied, YBR converted); grey frames as "
        "received (MONOCHROME1 or MONOCHROME2, 8 or 16 bits); attributes `photometric` and "
        "`source_photometric` of each `frames` dataset say which\n\n"
        f"## Timing\n\n{timing}\n"
        f"## De-identification applied\n\n{deid}\n{cleaning}"
    )
