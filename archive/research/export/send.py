"""Send one DICOM instance to a remote application entity with C-STORE (pynetdicom SCU).

Used to deliver exported objects, e.g. measurement reports, to a PACS:
:func:`parse_destination` reads ``AE@host:port`` and :func:`send_dataset`
opens one association, stores the instance and releases it. A store that the
peer answers with a status, even a failure status, returns that status; a
peer that cannot be reached, refuses the association or the SOP class, or
never answers raises :class:`~archive.errors.SendError`.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from archive.errors import SendError

logger = logging.getLogger(__name__)

#: DIMSE status of a successful C-STORE.
STATUS_SUCCESS = 0x0000

_MAX_AE_TITLE = 16


def parse_destination(text: str) -> tuple[str, str, int]:
    """Split ``AE@host:port`` into its parts.

    Parameters
    ----------
    text : str
        E.g. ``"PACS@10.0.0.5:104"``; an IPv6 host goes in brackets
        (``"PACS@[::1]:11112"``).

    Returns
    -------
    ae_title : str
    host : str
    port : int

    Raises
    ------
    SendError
        If a part is missing, the AE title is longer than 16 characters, or
        the port is not an integer in 1..65535.
    """
    expected = "expected AE@host:port (e.g. PACS@10.0.0.5:104)"
    ae_title, at, address = text.strip().partition("@")
    host, colon, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not (at and colon and ae_title.strip() and host):
        raise SendError(f"destination: {expected}, but got {text!r}")
    if len(ae_title.strip()) > _MAX_AE_TITLE:
        raise SendError(
            f"destination: {expected} with an AE title of at most {_MAX_AE_TITLE} characters, "
            f"but {ae_title.strip()!r} has {len(ae_title.strip())}"
        )
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SendError(f"destination: {expected} with a port in 1..65535, but got port {port_text!r}")
    return ae_title.strip(), host, int(port_text)


def send_dataset(
    ds: Dataset,
    ae_title: str,
    host: str,
    port: int,
    calling_ae: str = "USARCHIVE",
    *,
    timeout_s: float = 30.0,
) -> int:
    """Store one instance on a remote AE with C-STORE and return the peer's status.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance, with SOPClassUID and SOPInstanceUID. Sent in its own
        transfer syntax (``ds.file_meta.TransferSyntaxUID``) when it has one,
        else proposed as Explicit and Implicit VR Little Endian.
    ae_title : str
        Called AE title of the peer.
    host : str
        Host name or address of the peer.
    port : int
        TCP port of the peer.
    calling_ae : str
        Our AE title.
    timeout_s : float
        Limit for connecting, association negotiation and the store response,
        in seconds.

    Returns
    -------
    int
        The C-STORE response status (0x0000 success; 0xA700 out of
        resources, 0xC000.. cannot understand, 0xB000.. warnings, ...).

    Raises
    ------
    SendError
        If the dataset has no SOP Class/Instance UID, the association is
        rejected, aborted or times out, the peer accepts no presentation
        context for the SOP class, or no C-STORE response arrives.
    """
    sop_class = ds.get("SOPClassUID")
    sop_instance = ds.get("SOPInstanceUID")
    if not sop_class or not sop_instance:
        raise SendError(
            "C-STORE: expected a dataset with SOPClassUID and SOPInstanceUID, but "
            f"got SOPClassUID={sop_class!r}, SOPInstanceUID={sop_instance!r}"
        )
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    syntaxes = [syntax] if syntax else [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(sop_class, syntaxes)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    where = f"{ae_title}@{host}:{port}"
    assoc = ae.associate(host, port, ae_title=ae_title)
    refused_context = f"expected the peer to accept SOP class {sop_class} in {', '.join(syntaxes)}"
    if not assoc.is_established and assoc.rejected_contexts:
        # pynetdicom aborts an association in which no presentation context was accepted
        raise SendError(
            f"C-STORE of {sop_instance} to {where}: {refused_context}, but it accepted none; "
            "configure the peer to store this SOP class"
        )
    if not assoc.is_established:
        outcome = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not answered"
        raise SendError(
            f"C-STORE of {sop_instance} to {where}: expected an association, but it was {outcome}; "
            f"check the called AE title, host and port, and that {where} accepts {calling_ae!r}"
        )
    try:
        response = assoc.send_c_store(ds)
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in response:
        raise SendError(
            f"C-STORE of {sop_instance} to {where}: expected a response status, but none came "
            f"within {timeout_s} s (the association was aborted or timed out); try again"
        )
    status = int(response.Status)
    logger.info("C-STORE of %s to %s: status 0x%04X", sop_instance, where, status)
    return status
