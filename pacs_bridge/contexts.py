"""Presentation contexts the receiver accepts: every storage SOP class, verification, commitment.

Datasets are stored as received, so we accept the transfer syntaxes scanners
send (including compressed ones) and never transcode.
"""

from __future__ import annotations

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
from pynetdicom import AllStoragePresentationContexts
from pynetdicom.presentation import PresentationContext

#: Verification SOP Class (C-ECHO).
Verification = UID("1.2.840.10008.1.1")
#: Storage Commitment Push Model SOP Class.
StorageCommitmentPushModel = UID("1.2.840.10008.1.20.1")

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
    """UIDs of every storage SOP class pynetdicom knows (``AllStoragePresentationContexts``)."""
    return [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]


def supported_contexts() -> list[PresentationContext]:
    """The presentation contexts of the receiver, as acceptor.

    Returns
    -------
    list of PresentationContext
        One per storage SOP class with :data:`STORAGE_TRANSFER_SYNTAXES`, plus
        Verification and Storage Commitment Push Model (SCP role; we also accept
        the SCU role the requester proposes, so results can come back on its association).
    """
    contexts: list[PresentationContext] = []
    for uid in [*storage_sop_classes(), Verification]:
        context = PresentationContext()
        context.abstract_syntax = uid
        context.transfer_syntax = list(STORAGE_TRANSFER_SYNTAXES if uid != Verification else _PLAIN_SYNTAXES)
        contexts.append(context)
    commitment = PresentationContext()
    commitment.abstract_syntax = StorageCommitmentPushModel
    commitment.transfer_syntax = list(_PLAIN_SYNTAXES)
    commitment.scu_role = True
    commitment.scp_role = True
    contexts.append(commitment)
    return contexts


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
