"""A DICOM peer at the byte level, for the hardening tests: it can send what no real SCU would."""

from __future__ import annotations

import contextlib
import socket
import struct
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode

VERIFICATION = "1.2.840.10008.1.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
_APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
_IMPLEMENTATION_UID = b"1.2.826.0.1.3680043.9.7133.1"


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _ae(title: bytes) -> bytes:
    return title.ljust(16, b" ")[:16]


def associate_rq(
    *,
    calling: bytes = b"SCANNER",
    called: bytes = b"USARCHIVE",
    contexts: tuple[tuple[int, str], ...] = ((1, US_MULTIFRAME), (3, VERIFICATION)),
    max_length: int = 16384,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``contexts`` (id, abstract syntax), Explicit VR Little Endian."""
    items = _item(0x10, _APPLICATION_CONTEXT)
    for context_id, abstract in contexts:
        sub = _item(0x30, abstract.encode()) + _item(0x40, str(ExplicitVRLittleEndian).encode())
        items += _item(0x20, bytes([context_id, 0, 0, 0]) + sub)
    items += _item(0x50, _item(0x51, struct.pack(">L", max_length)) + _item(0x52, _IMPLEMENTATION_UID))
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + b"\0" * 32 + items
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def p_data(*pdvs: tuple[int, int, bytes]) -> bytes:
    """A P-DATA-TF PDU of PDVs (context id, message control header, fragment)."""
    body = b"".join(struct.pack(">LBB", len(data) + 2, cid, control) + data for cid, control, data in pdvs)
    return struct.pack(">BBL", 0x04, 0, len(body)) + body


def store_command(sop_instance_uid: str, *, message_id: int = 1, sop_class_uid: str = US_MULTIFRAME) -> bytes:
    """An encoded C-STORE-RQ command set announcing a data set."""
    command = Dataset()
    command.AffectedSOPClassUID = sop_class_uid
    command.CommandField = 0x0001
    command.MessageID = message_id
    command.Priority = 0
    command.CommandDataSetType = 0x0001
    command.AffectedSOPInstanceUID = sop_instance_uid
    return _with_group_length(command)


def echo_command(message_id: int = 1) -> bytes:
    """An encoded C-ECHO-RQ command set."""
    command = Dataset()
    command.AffectedSOPClassUID = VERIFICATION
    command.CommandField = 0x0030
    command.MessageID = message_id
    command.CommandDataSetType = 0x0101
    return _with_group_length(command)


def _with_group_length(command: Dataset) -> bytes:
    encoded = encode(command, True, True)
    assert encoded is not None
    return struct.pack("<HHLL", 0x0000, 0x0000, 4, len(encoded)) + encoded


class RawPeer:
    """One TCP connection to the receiver, speaking PDUs as bytes.

    Parameters
    ----------
    port : int
        The receiver's port on 127.0.0.1.
    source : str
        Loopback address to connect from.
    timeout_s : float
        Timeout of every read.
    """

    def __init__(self, port: int, *, source: str = "127.0.0.1", timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout_s, source_address=(source, 0)
        )

    def send(self, data: bytes) -> bool:
        """Send ``data``; ``False`` when the receiver has closed the connection."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def read_pdu(self) -> tuple[int, bytes] | None:
        """The next PDU (type, body), or ``None`` when the connection was closed."""
        header = self._recv(6)
        if len(header) < 6:
            return None
        pdu_type, _, length = struct.unpack(">BBL", header)
        body = self._recv(length)
        return None if len(body) < length else (pdu_type, body)

    def _recv(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            try:
                chunk = self.sock.recv(count - len(data))
            except OSError:
                return data
            if not chunk:
                return data
            data += chunk
        return data

    def associate(self, rq: bytes | None = None) -> int:
        """Send an A-ASSOCIATE-RQ; return the answer's PDU type (2 accepted, 3 rejected, 0 closed)."""
        self.send(associate_rq() if rq is None else rq)
        answer = self.read_pdu()
        return 0 if answer is None else answer[0]

    def read_status(self) -> int | None:
        """Read PDUs until a DIMSE response command arrives; its Status (``None`` if aborted or closed)."""
        command = b""
        while True:
            pdu = self.read_pdu()
            if pdu is None or pdu[0] != 0x04:
                return None
            body = pdu[1]
            offset = 0
            while offset < len(body):
                (length,) = struct.unpack_from(">L", body, offset)
                control = body[offset + 5]
                command += body[offset + 6 : offset + 4 + length]
                offset += 4 + length
                if control & 0x03 == 0x03:
                    import io

                    return int(decode(io.BytesIO(command), True, True).Status)

    def store(
        self, sop_instance_uid: str, data_set: bytes, *, context_id: int = 1, pdv_bytes: int = 16000
    ) -> int | None:
        """Send a C-STORE of ``data_set`` (encoded bytes) on ``context_id``; return the response status."""
        self.send(p_data((context_id, 0x03, store_command(sop_instance_uid))))
        for start in range(0, max(len(data_set), 1), pdv_bytes):
            last = start + pdv_bytes >= len(data_set)
            if not self.send(
                p_data((context_id, 0x02 if last else 0x00, data_set[start : start + pdv_bytes]))
            ):
                return None
        return self.read_status()

    def release(self) -> bool:
        """A-RELEASE; whether the receiver answered A-RELEASE-RP."""
        self.send(struct.pack(">BBL", 0x05, 0, 4) + b"\0" * 4)
        answer = self.read_pdu()
        return answer is not None and answer[0] == 0x06

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_fds(pid: int | None = None) -> int:
    """Number of open file descriptors of process ``pid`` (default: this one)."""
    return len(list(Path(f"/proc/{pid or 'self'}/fd").iterdir()))


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of process ``pid`` (default: this one)."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


def spool_files(staging_dir: Path) -> list[Path]:
    """Spool files (``*.dcm``) of every receiver under ``staging_dir``."""
    return sorted((staging_dir / "pacs_bridge").glob("*/*.dcm"))


def connections_to(port: int) -> int:
    """TCP connections to ``port`` on loopback, in any state but LISTEN and TIME_WAIT."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] not in ("0A", "06"):
            count += 1
    return count
