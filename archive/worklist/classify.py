"""An arriving instance's worklist entry, and the classification it gives.

DOMAIN.md §3 ranks a worklist entry copied by the scanner above every header
rule: when an instance names an entry of ours (:func:`identifiers_of`: the
Request Attributes Sequence's Scheduled Procedure Step ID and Requested
Procedure ID, the Study Instance UID, the Accession Number, at the top level
or in the sequence) and is of the entry's modality (:func:`applies_to`: an SR
or a screen capture of the study is not the scanned clip),
:func:`with_worklist` replaces the rules' levels, side, technique, approach
and procedure type by the entry's, each recorded with the source
``worklist:<entry>`` (a person's tag still wins: ingest never overwrites a
``user:`` value). The detail of each such field names the entry and how it
was matched, then what the rules found (they read the copied descriptions
and the free text the operator typed, and note a source that disagreed), so
``usarchive show`` lists both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from pydicom.dataset import Dataset
from sqlalchemy import Connection, Engine

from archive.index.engine import read_transaction
from archive.model import Approach, Technique
from archive.rules import Classification
from archive.worklist.model import WorklistEntry
from archive.worklist.store import entry_for_in

logger = logging.getLogger(__name__)

_FIELDS = ("levels", "side", "technique", "approach", "procedure_type")


@dataclass(frozen=True)
class InstanceIdentifiers:
    """The identifiers of the scheduled procedure an instance was made for."""

    study_instance_uid: str
    accession_numbers: tuple[str, ...]
    requested_procedure_ids: tuple[str, ...]
    step_ids: tuple[str, ...]


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def identifiers_of(dataset: Dataset) -> InstanceIdentifiers:
    """The worklist identifiers ``dataset`` carries (top level and Request Attributes Sequence)."""
    items = [item for item in dataset.get("RequestAttributesSequence") or [] if isinstance(item, Dataset)]
    sources = [dataset, *items]
    return InstanceIdentifiers(
        study_instance_uid=_text(dataset, "StudyInstanceUID"),
        accession_numbers=tuple(v for v in (_text(s, "AccessionNumber") for s in sources) if v),
        requested_procedure_ids=tuple(v for v in (_text(s, "RequestedProcedureID") for s in sources) if v),
        step_ids=tuple(v for v in (_text(s, "ScheduledProcedureStepID") for s in sources) if v),
    )


def entry_of_instance(connection: Connection, dataset: Dataset) -> WorklistEntry | None:
    """The worklist entry ``dataset`` was made for, or ``None``."""
    ids = identifiers_of(dataset)
    return entry_for_in(
        connection,
        study_instance_uid=ids.study_instance_uid,
        accession_numbers=ids.accession_numbers,
        requested_procedure_ids=ids.requested_procedure_ids,
        step_ids=ids.step_ids,
    )


def applies_to(entry: WorklistEntry, dataset: Dataset) -> bool:
    """Whether the entry speaks for this instance: its modality (or none given), not an SR of the study."""
    modality = _text(dataset, "Modality").upper()
    return not modality or modality == entry.procedure.modality.upper()


def _matched_by(entry: WorklistEntry, ids: InstanceIdentifiers) -> str:
    if entry.step_id in ids.step_ids:
        return f"Scheduled Procedure Step ID {entry.step_id}"
    if entry.requested_procedure_id in ids.requested_procedure_ids:
        return f"Requested Procedure ID {entry.requested_procedure_id}"
    if entry.study_instance_uid == ids.study_instance_uid:
        return "Study Instance UID"
    return f"Accession Number {entry.procedure.accession_number}"


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return "+".join(str(getattr(v, "value", v)) for v in value) or "nothing"
    return str(getattr(value, "value", value)) if value is not None else "nothing"


def with_worklist(rules: Classification | None, entry: WorklistEntry, dataset: Dataset) -> Classification:
    """``rules`` with the entry's procedure attributes, sourced ``worklist:<entry>`` (module docstring)."""
    p = entry.procedure
    values: dict[str, object] = {
        "levels": p.levels,
        "side": p.side,
        "technique": p.technique,
        "approach": p.approach,
        "procedure_type": p.procedure_type,
    }
    unknown = {"technique": Technique.UNKNOWN, "approach": Approach.UNKNOWN}
    how = _matched_by(entry, identifiers_of(dataset))
    base = f"worklist entry {entry.pk} ({p.description}; matched by {how})"
    provenance = dict(rules.provenance) if rules is not None else {}
    sources: dict[str, str] = {}
    chosen: dict[str, object] = {}
    for name in _FIELDS:
        value = values[name]
        if value == unknown.get(name):
            continue  # the entry does not say: the rules' value stays
        said = getattr(rules, name, None) if rules is not None else None
        found = provenance.get(name, "")
        note = ""
        if said not in (None, (), unknown.get(name)) and said != value:
            note = f"; the rules said {_shown(said)}" + (f": {found}" if found else "")
        elif found:
            note = (
                f"; the rules agree: {found}"  # with what the other sources (free text) said, if it differed
            )
        provenance[name] = base + note
        sources[name] = entry.provenance
        chosen[name] = value
    start = rules or Classification(
        levels=(), side=None, technique=Technique.UNKNOWN, procedure_type=None, provenance={}, region=None
    )
    return replace(start, provenance=provenance, sources=sources, **chosen)  # type: ignore[arg-type]


def worklist_classification(
    engine: Engine, dataset: Dataset, found: Classification | None
) -> Classification | None:
    """``found`` (the rules') with the values of the instance's worklist entry, if it names one.

    A failing look-up keeps the rules' values (logged): the worklist never loses an instance.
    """
    try:
        with read_transaction(engine) as connection:
            entry = entry_of_instance(connection, dataset)
        if entry is None or not applies_to(entry, dataset):
            return found
        return with_worklist(found, entry, dataset)
    except Exception:
        logger.exception(
            "worklist look-up failed on %s; the rules' values kept", _text(dataset, "SOPInstanceUID")
        )
        return found
