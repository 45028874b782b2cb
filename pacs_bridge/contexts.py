"""Presentation contexts the receiver accepts: every storage SOP class, echo, commitment, FIND, MPPS.

Datasets are stored as received, so we accept the transfer syntaxes scanners
send (including compressed ones) and never transcode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# pydicom's UID dictionary has no public name (pydicom.uid imports it from here, pydicom 1.0 to 3.x):
# the one place we read it, to list the storage classes pynetdicom leaves out.
from pydicom._uid_dict import UID_dictionary
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts, register_uid
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

#: Result codes of a refused presentation context (PS3.8 9.3.3.2).
_REASONS = {
    0x01: "user rejection",
    0x02: "no reason given",
    0x03: "abstract syntax not supported",
    0x04: "transfer syntaxes not supported",
}

#: Verification SOP Class (C-ECHO).
Verification = UID("1.2.840.10008.1.1")
#: Storage Commitment Push Model SOP Class.
StorageCommitmentPushModel = UID("1.2.840.10008.1.20.1")

#: Query/Retrieve FIND SOP classes (PS3.4 C.6): Patient Root and Study Root information models.
PatientRootFind = UID("1.2.840.10008.5.1.4.1.2.1.1")
StudyRootFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
#: Modality Worklist Information Model - FIND (PS3.4 K.6).
ModalityWorklistFind = UID("1.2.840.10008.5.1.4.31")
#: Modality Performed Procedure Step SOP Class (PS3.4 F.7).
ModalityPerformedProcedureStep = UID("1.2.840.10008.3.1.2.3.3")
QUERY_SOP_CLASSES: tuple[UID, ...] = (PatientRootFind, StudyRootFind, ModalityWorklistFind)
#: Normalized (N-CREATE / N-SET) classes we serve besides storage commitment.
PROCEDURE_STEP_SOP_CLASSES: tuple[UID, ...] = (ModalityPerformedProcedureStep,)

#: Query/Retrieve MOVE and GET SOP classes served (Patient Root, Study Root).
RETRIEVE_SOP_CLASSES: tuple[UID, ...] = (
    UID("1.2.840.10008.5.1.4.1.2.1.2"),
    UID("1.2.840.10008.5.1.4.1.2.1.3"),
    UID("1.2.840.10008.5.1.4.1.2.2.2"),
    UID("1.2.840.10008.5.1.4.1.2.2.3"),
)

#: Root of the storage SOP classes of PS3.4 Annex B (images, SR, waveforms, RT, ...).
_STORAGE_ROOT = "1.2.840.10008.5.1.4.1.1."

#: Transfer syntaxes accepted for storage, most common for ultrasound first.
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)

#: Transfer syntaxes for verification and storage commitment (uncompressed only).
_PLAIN_SYNTAXES: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


def storage_sop_classes() -> list[str]:
    """UIDs of every storage SOP class: pynetdicom's and the retired ones pydicom names.

    ``usarchive import`` stores an instance of any SOP class, so the receiver
    accepts every image and object storage class of PS3.4 Annex B, including
    the retired ones older scanners still send (Ultrasound Image Storage
    1.2.840.10008.5.1.4.1.1.6 and Ultrasound Multi-frame Image Storage
    1.2.840.10008.5.1.4.1.1.3, from ACR-NEMA days): pynetdicom's
    ``AllStoragePresentationContexts`` omits retired classes, pydicom's UID
    dictionary has them all.

    Returns
    -------
    list of str
        pynetdicom's classes first, then the others in UID dictionary order.
    """
    known = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
    seen = set(known)
    others = [
        uid
        for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class" and uid.startswith(_STORAGE_ROOT) and "Storage" in name and uid not in seen
    ]
    _register_storage(others)
    return known + others


def _register_storage(uids: list[str]) -> None:
    """Tell pynetdicom the classes it does not know are storage classes (else it cannot serve C-STORE)."""
    for uid in uids:
        if uid_to_service_class(uid) is StorageServiceClass:
            continue
        keyword = re.sub(r"\W", "", str(UID_dictionary[uid][4])) or "Storage_" + uid.replace(".", "_")
        if not keyword.isidentifier():
            keyword = "Storage_" + uid.replace(".", "_")
        register_uid(uid, keyword, StorageServiceClass)


def supported_contexts(*, retrieve: bool = False) -> list[PresentationContext]:
    """The presentation contexts of the receiver, as acceptor.

    Parameters
    ----------
    retrieve : bool
        Also accept the C-MOVE and C-GET classes (:data:`RETRIEVE_SOP_CLASSES`), and
        the SCP role a C-GET requester proposes for storage classes (SCP/SCU role
        selection), so that sub-operations can run on its association.

    Returns
    -------
    list of PresentationContext
        One per storage SOP class with :data:`STORAGE_TRANSFER_SYNTAXES`, plus
        Verification, the FIND classes of :data:`QUERY_SOP_CLASSES` (Q/R and
        Modality Worklist), MPPS (:data:`PROCEDURE_STEP_SOP_CLASSES`) and Storage
        Commitment Push Model (SCP role; we also accept the SCU role the requester
        proposes, so results can come back on its association). Which of them a
        requester is offered depends on its permissions (:func:`pacs_bridge.access.contexts_for`).
    """
    contexts: list[PresentationContext] = []
    for uid in [*storage_sop_classes(), Verification, *QUERY_SOP_CLASSES, *PROCEDURE_STEP_SOP_CLASSES]:
        context = PresentationContext()
        context.abstract_syntax = uid
        plain = uid == Verification or uid in QUERY_SOP_CLASSES or uid in PROCEDURE_STEP_SOP_CLASSES
        context.transfer_syntax = list(_PLAIN_SYNTAXES if plain else STORAGE_TRANSFER_SYNTAXES)
        if retrieve and not plain:
            context.scu_role = True
            context.scp_role = True
        contexts.append(context)
    for uid in RETRIEVE_SOP_CLASSES if retrieve else ():
        context = PresentationContext()
        context.abstract_syntax = uid
        context.transfer_syntax = list(_PLAIN_SYNTAXES)
        contexts.append(context)
    commitment = PresentationContext()
    commitment.abstract_syntax = StorageCommitmentPushModel
    commitment.transfer_syntax = list(_PLAIN_SYNTAXES)
    commitment.scu_role = True
    commitment.scp_role = True
    contexts.append(commitment)
    return contexts


def receiving_contexts(
    supported: list[PresentationContext], role_selection: Mapping[UID, Any]
) -> list[PresentationContext]:
    """Storage contexts for a C-GET requester that may not store: it may only take the SCP role.

    Parameters
    ----------
    supported : list of PresentationContext
        The acceptor's supported contexts.
    role_selection : mapping of SOP class UID to role selection item
        The requester's SCP/SCU Role Selection items (``requestor.role_selection``).

    Returns
    -------
    list of PresentationContext
        A copy of each storage context whose SOP class the requester proposed
        with the SCP role, accepting only that role (so it can receive C-GET
        sub-operations but not send C-STORE on them).
    """
    contexts = []
    for context in supported:
        uid = UID(str(context.abstract_syntax))
        item = role_selection.get(uid)
        if not uid.startswith(_STORAGE_ROOT) or item is None or not getattr(item, "scp_role", False):
            continue
        receiving = PresentationContext()
        receiving.abstract_syntax = context.abstract_syntax
        receiving.transfer_syntax = list(context.transfer_syntax)
        receiving.scu_role = False
        receiving.scp_role = True
        contexts.append(receiving)
    return contexts


def refused_context_lines(assoc: Association) -> list[str]:
    """One line per presentation context the requestor proposed and we refused.

    Each names the context ID, the abstract syntax (UID and name), the
    transfer syntaxes proposed for it and the result, e.g. ``presentation
    context 3 refused (transfer syntaxes not supported): abstract syntax
    1.2.3 (unknown), transfer syntaxes 1.2.840.10008.1.2.4.100 (MPEG2 ...)``.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        An association we accepted (as acceptor).

    Returns
    -------
    list of str
        Empty when every proposed context was accepted.
    """
    proposed = {cx.context_id: cx for cx in assoc.requestor.requested_contexts}
    lines: list[str] = []
    for context in assoc.rejected_contexts:
        offered = proposed.get(context.context_id, context)
        syntaxes = ", ".join(f"{UID(ts)} ({_name(ts)})" for ts in offered.transfer_syntax) or "none"
        abstract = offered.abstract_syntax or context.abstract_syntax
        reason = _REASONS.get(context.result or 0, context.status)
        lines.append(
            f"presentation context {context.context_id} refused ({reason}): "
            f"abstract syntax {abstract} ({_name(abstract)}), transfer syntaxes {syntaxes}"
        )
    return lines


def _name(uid: str | None) -> str:
    if not uid:
        return "none"
    name = UID(uid).name
    return "unknown" if name == str(uid) else name


def commitment_report_context() -> PresentationContext:
    """The context proposed when sending a commitment result on a new association.

    On that association we are the requester but play the Storage Commitment SCP role
    (we send the N-EVENT-REPORT), hence the SCP/SCU role selection.
    """
    context = PresentationContext()
    context.abstract_syntax = StorageCommitmentPushModel
    context.transfer_syntax = list(_PLAIN_SYNTAXES)
    context.scu_role = False
    context.scp_role = True
    return context
