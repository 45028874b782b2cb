"""Reading PDUs within limits: nothing a peer declares is buffered before it is checked.

pynetdicom 3.x reads a PDU (``DULServiceProvider._read_pdu_data``) by taking
the length its header declares and reading that many bytes into memory, on a
blocking socket, before anything else is looked at: a peer that declares
1 GiB in an A-ASSOCIATE-RQ grows the process by what it sends, before its AE
title is even read, and a peer that sends one byte a second holds the thread
forever. :func:`read_pdu` replaces it for the receiver's associations
(installed by :mod:`pacs_bridge.dul_loop`):

* the 6-byte header is read first; the declared length is compared with
  what that state allows (``max_associate_rq_bytes`` before association,
  ``max_pdu_bytes`` for a P-DATA-TF afterwards, a small constant for the
  other PDUs) and a longer PDU aborts the association before one byte of
  it is read;
* every read has a deadline: before association, the end of the ARTIM
  window (``associate_timeout_s`` from connect); afterwards,
  ``network_timeout_s`` for the whole PDU;
* a P-DATA-TF's PDVs are checked before pynetdicom decodes them: each must
  name an accepted presentation context and fit inside the PDU, and a
  command set may not grow beyond :data:`~pacs_bridge.config.MAX_COMMAND_SET_BYTES`.

A violation raises :class:`PeerViolationError`; the DUL loop answers it with an
A-ABORT, logs it with the peer and closes the connection.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from pacs_bridge.config import MAX_COMMAND_SET_BYTES, BridgeSettings

LOGGER = logging.getLogger(__name__)

#: Longest A-RELEASE or A-ABORT (or association answer) PDU read; theirs are 4 to a few hundred bytes.
OTHER_PDU_BYTES = 64 * 1024
_PDU_TYPES = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07})
_P_DATA_TF = 0x04
_A_ASSOCIATE_RQ = 0x01
#: Attribute set on an association whose A-ASSOCIATE-RQ's calling AE title has control characters.
BAD_CALLING_AE_ATTRIBUTE = "usarchive_bad_calling_ae"
#: A-ABORT reason "invalid PDU parameter value" (PS3.8 9.3.8).
ABORT_INVALID_PARAMETER = 0x06
#: A-ABORT reason "unexpected PDU" (PS3.8 9.3.8).
ABORT_UNEXPECTED_PDU = 0x02


class PeerViolationError(Exception):
    """The peer sent what the limits do not allow; the association is to be aborted.

    Attributes
    ----------
    reason : int
        A-ABORT reason/diagnostic to send (PS3.8 Table 9-26).
    """

    def __init__(self, message: str, reason: int = ABORT_INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


class PeerTimeoutError(PeerViolationError):
    """The peer did not deliver a PDU within its deadline."""


@dataclass(frozen=True)
class PduLimits:
    """The limits :func:`read_pdu` applies (see :class:`~pacs_bridge.config.BridgeSettings`)."""

    associate_rq_bytes: int
    pdu_bytes: int
    associate_timeout_s: float
    pdu_timeout_s: float
    command_set_bytes: int = MAX_COMMAND_SET_BYTES

    @classmethod
    def from_settings(cls, settings: BridgeSettings) -> PduLimits:
        """The limits configured in ``settings``."""
        return cls(
            associate_rq_bytes=settings.max_associate_rq_bytes,
            pdu_bytes=settings.pdu_read_limit,
            associate_timeout_s=settings.associate_timeout_s,
            pdu_timeout_s=settings.network_timeout_s,
        )


class PduReader:
    """Reads one association's PDUs within :class:`PduLimits`.

    Parameters
    ----------
    dul : pynetdicom.dul.DULServiceProvider
        The association's DUL (its socket, event queue and decoder are used).
    limits : PduLimits
        What the peer may send.
    connected_at : float
        ``time.monotonic()`` when the connection was accepted (start of the ARTIM window).
    """

    def __init__(self, dul: Any, limits: PduLimits, connected_at: float) -> None:
        self._dul = dul
        self._limits = limits
        self._connected_at = connected_at
        self._command_bytes = 0

    @property
    def associated(self) -> bool:
        """Whether the A-ASSOCIATE-RQ has been received (the state machine left Sta2)."""
        return str(self._dul.state_machine.current_state) not in ("Sta1", "Sta2")

    def artim_expired(self) -> bool:
        """Whether a not yet associated peer has used up its ARTIM window."""
        if self.associated:
            return False
        return time.monotonic() - self._connected_at > self._limits.associate_timeout_s

    def read_pdu(self) -> None:
        """Read one PDU and queue its event (pynetdicom's ``_read_pdu_data``, bounded).

        Raises
        ------
        PeerViolationError
            The PDU is longer than allowed, names an unnegotiated context, or
            did not arrive in time.
        """
        dul = self._dul
        associated = self.associated
        if associated:
            deadline = time.monotonic() + self._limits.pdu_timeout_s
        else:
            deadline = self._connected_at + self._limits.associate_timeout_s
        header = self._recv(6, deadline)
        if len(header) < 6:
            dul.event_queue.put("Evt17")  # closed before a whole header: transport closed
            return
        pdu_type, _, length = struct.unpack(">BBL", header)
        if pdu_type not in _PDU_TYPES:
            LOGGER.warning("unknown PDU type 0x%02X received", pdu_type)
            dul.event_queue.put("Evt19")
            return
        if not associated:
            limit, what = self._limits.associate_rq_bytes, "max_associate_rq_bytes before association"
        elif pdu_type == _P_DATA_TF:
            limit, what = self._limits.pdu_bytes, "the negotiated maximum PDU length (max_pdu_bytes)"
        else:
            limit, what = OTHER_PDU_BYTES, "the longest A-RELEASE/A-ABORT PDU"
        if length > limit:
            raise PeerViolationError(
                f"PDU type 0x{pdu_type:02X} declares {length} bytes, more than {what} ({limit}); "
                "nothing of it was read"
            )
        body = self._recv(length, deadline)
        if len(body) < length:
            LOGGER.warning("connection closed after %d of %d bytes of a PDU", len(body), length)
            dul.event_queue.put("Evt17")
            return
        if pdu_type == _P_DATA_TF:
            self._check_pdvs(body)
        elif pdu_type == _A_ASSOCIATE_RQ and not associated and len(body) >= 36:
            self._check_calling_ae(bytes(body[20:36]))
        data = bytearray(header)
        data += body
        del body
        try:
            pdu, event = dul._decode_pdu(data)
        except Exception as exc:
            LOGGER.warning("undecodable PDU type 0x%02X (%s: %s)", pdu_type, type(exc).__name__, exc)
            dul.event_queue.put("Evt19")
            return
        dul.event_queue.put(event)
        dul._recv_pdu.put(pdu)

    def _check_calling_ae(self, raw: bytes) -> None:
        """Mark the association when its calling AE title has characters an AE title may not have.

        pynetdicom strips leading and trailing whitespace (a tab included), so
        a title with a leading tab would pass trimmed; the raw bytes are looked
        at here and :class:`~pacs_bridge.access.AccessControlledAE` rejects the
        association (reason 3, calling AE title not recognised).
        """
        if any(byte < 0x20 or byte >= 0x7F or byte == 0x5C for byte in raw):
            setattr(self._dul.assoc, BAD_CALLING_AE_ATTRIBUTE, raw)

    def _check_pdvs(self, body: bytes) -> None:
        """Check a P-DATA-TF's PDV items before pynetdicom decodes them."""
        accepted = getattr(self._dul.assoc, "_accepted_cx", {})
        offset = 0
        while offset < len(body):
            if offset + 6 > len(body):
                raise PeerViolationError("P-DATA-TF ends inside a PDV item header")
            (item_length,) = struct.unpack_from(">L", body, offset)
            if item_length < 2 or offset + 4 + item_length > len(body):
                raise PeerViolationError(f"PDV item length {item_length} does not fit the P-DATA-TF")
            context_id, control = body[offset + 4], body[offset + 5]
            if context_id not in accepted:
                raise PeerViolationError(
                    f"PDV on presentation context {context_id}, which was not accepted on this "
                    f"association (accepted: {sorted(accepted)})",
                    ABORT_UNEXPECTED_PDU,
                )
            if control & 0x01:
                self._command_bytes += item_length - 2
                if self._command_bytes > self._limits.command_set_bytes:
                    raise PeerViolationError(
                        f"command set longer than {self._limits.command_set_bytes} bytes; "
                        "a DIMSE command set is a few hundred bytes"
                    )
                if control & 0x02:
                    self._command_bytes = 0
            offset += 4 + item_length

    def _recv(self, count: int, deadline: float) -> bytes:
        """Read ``count`` bytes (fewer only if the peer closed); :class:`PeerTimeoutError` at ``deadline``."""
        association_socket = self._dul.socket
        raw: socket.socket | None = getattr(association_socket, "socket", None)
        if raw is None:
            return b""
        chunks: list[bytes] = []
        received = 0
        previous_timeout = raw.gettimeout()
        try:
            while received < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerTimeoutError(
                        f"{received} of {count} bytes of a PDU arrived within its time limit "
                        f"({'network_timeout_s' if self.associated else 'associate_timeout_s'})"
                    )
                raw.settimeout(remaining)
                try:
                    chunk = raw.recv(min(count - received, 65536))
                except TimeoutError:
                    continue  # the deadline check above raises
                except OSError:
                    break  # reset or closed: the caller reports the transport closed
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        finally:
            with contextlib.suppress(OSError):
                raw.settimeout(previous_timeout)
        return b"".join(chunks)
