"""Patient conflicts: a study whose instances disagree on the patient.

Policy (docs/archive.md, "Patient identity"): every instance keeps the Patient
ID and Patient Name it was received with (``instance.patient_id`` and
``instance.patient_name``), and that is what ``find`` and ``show`` report for
it. The study is filed under the patient of the first instance indexed; a
later instance is never re-attributed and never renames that patient. Two
disagreements are flagged as a *patient conflict* of the study, in ``show``,
``find --json`` and ``verify``, for a person to resolve:

- ``patient-id``: the instances of one study carry different Patient IDs;
- ``patient-name``: instances with one Patient ID carry different Patient
  Names (the study is flagged wherever that Patient ID appears).

Nothing is rejected: a scanner's queue must not block on a registration error
that only the clinic can correct (as dcm4chee and Orthanc, which store and let
an administrator merge or correct patients).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from archive.index import schema

_i, _se, _st = schema.instance, schema.series, schema.study


@dataclass(frozen=True)
class PatientConflict:
    """Why one study is flagged.

    Attributes
    ----------
    study_instance_uid : str
    kind : {"patient-id", "patient-name"}
    detail : str
        What disagrees, e.g. ``"instances carry Patient IDs P1 (2), P2 (1)"``.
    """

    study_instance_uid: str
    kind: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"study_instance_uid": self.study_instance_uid, "kind": self.kind, "detail": self.detail}


def _show(counts: dict[str, int]) -> str:
    return ", ".join(f"{value or '(none)'} ({count})" for value, count in sorted(counts.items()))


def patient_conflicts(
    connection: Connection, study_uids: Iterable[str] | None = None
) -> list[PatientConflict]:
    """The patient conflicts of the given studies (all studies when ``None``).

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Any connection to the index.
    study_uids : iterable of str, optional
        Only these studies.

    Returns
    -------
    list of PatientConflict
        Sorted by study UID, Patient ID conflicts first.
    """
    statement = select(_st.c.study_instance_uid, _i.c.patient_id, _i.c.patient_name).select_from(
        _i.join(_se, _se.c.id == _i.c.series_pk).join(_st, _st.c.id == _se.c.study_pk)
    )
    wanted = None if study_uids is None else sorted(set(study_uids))
    if wanted is not None:
        if not wanted:
            return []
        statement = statement.where(_st.c.study_instance_uid.in_(wanted))
    ids: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    patient_ids_of_study: dict[str, set[str]] = defaultdict(set)
    for study, patient_id, _name in connection.execute(statement):
        ids[study][patient_id or ""] += 1
        patient_ids_of_study[study].add(patient_id or "")
    names = _names_by_patient_id(
        connection, {pid for pids in patient_ids_of_study.values() for pid in pids if pid}
    )
    conflicts: list[PatientConflict] = []
    for study in sorted(ids):
        if len(ids[study]) > 1:
            detail = f"instances carry Patient IDs {_show(ids[study])}"
            conflicts.append(PatientConflict(study, "patient-id", detail))
        for patient_id in sorted(patient_ids_of_study[study]):
            counts = names.get(patient_id)
            if counts is not None and len(counts) > 1:
                detail = f"Patient ID {patient_id} is received with Patient Names {_show(counts)}"
                conflicts.append(PatientConflict(study, "patient-name", detail))
    return conflicts


def _names_by_patient_id(connection: Connection, patient_ids: set[str]) -> dict[str, dict[str, int]]:
    """Per Patient ID, the names its instances carry over the whole archive, with counts."""
    if not patient_ids:
        return {}
    statement = (
        select(_i.c.patient_id, _i.c.patient_name, func.count())
        .where(_i.c.patient_id.in_(sorted(patient_ids)))
        .group_by(_i.c.patient_id, _i.c.patient_name)
    )
    names: dict[str, dict[str, int]] = defaultdict(dict)
    for patient_id, name, count in connection.execute(statement):
        names[patient_id][name or ""] = int(count)
    return dict(names)


def conflicting_studies(connection: Connection, study_uids: Iterable[str]) -> dict[str, list[str]]:
    """Study UID → details of its conflicts, for the studies given that have any."""
    found: dict[str, list[str]] = defaultdict(list)
    for conflict in patient_conflicts(connection, study_uids):
        found[conflict.study_instance_uid].append(conflict.detail)
    return dict(found)
