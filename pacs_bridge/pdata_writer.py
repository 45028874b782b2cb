"""Write one DIMSE message's P-DATA-TF PDUs straight onto a TCP socket, many PDUs per system call.

pynetdicom sends a data set one P-DATA-TF PDU at a time: each fragment is
read, wrapped in a primitive, queued to the association's DUL thread, encoded
and written by that thread. On 16 KB PDUs that is about 2 000 round trips
through Python and a thread hand-over for every 30 MB clip, which is what made
a C-MOVE four times slower than dcmtk.

:func:`write_stored_message` writes the same PDUs (PS3.8 9.3.5: a 6-byte PDU
header, then one PDV item of 4-byte length, presentation context ID and
message control header, then the fragment) for an encoded command set
(already in PDUs) followed by a data set taken from a file, from ``offset``
to the end. The file is read in blocks of whole fragments (about
:data:`BLOCK_BYTES`); each block goes out by ``socket.sendmsg`` of
``[header, fragment, header, fragment, ...]`` (scatter-gather: the fragments
are views of the block, never copied), at most ``IOV_MAX`` buffers per call,
resuming after a partial send. Nothing else of the clip is in memory.

The socket is left in whatever blocking mode it has (another thread may be
reading it): each call is made with ``MSG_DONTWAIT`` and a socket that is not
writable is waited for with ``poll``, at most ``stall_timeout_s`` without any
progress, then :class:`TimeoutError`. Connection errors are raised as
``OSError``. This module knows nothing of pynetdicom; the caller
(:func:`pacs_bridge._pynetdicom_compat.fast_send_c_store`) makes sure nothing
else writes to the socket meanwhile.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path

#: Data read from the file per block (rounded down to whole fragments, at least one).
BLOCK_BYTES = 4 * 1024 * 1024
#: Fragment size when the peer set no maximum PDU length (0: unlimited).
UNLIMITED_FRAGMENT = 1024 * 1024
#: Bytes of a P-DATA-TF PDU before its fragment: PDU header (6) and PDV item header (6).
HEADER_BYTES = 12
_DATA_NOT_LAST, _DATA_LAST = 0x00, 0x02


def iov_max() -> int:
    """The most buffers one ``sendmsg`` may take (``IOV_MAX``; 1024 where it cannot be asked)."""
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        value = -1
    return value if value > 0 else 1024


def supported(sock: object) -> bool:
    """Whether ``sock`` can be written this way: a plain (not TLS) stream socket, ``MSG_DONTWAIT``."""
    import ssl

    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return False
    return sock.type == socket.SOCK_STREAM and hasattr(socket, "MSG_DONTWAIT")


def fragment_length(max_pdu_length: int) -> int:
    """Data bytes per fragment for the peer's maximum PDU length (PS3.8: it bounds the PDV list)."""
    if max_pdu_length == 0:
        return UNLIMITED_FRAGMENT
    if max_pdu_length <= 6:
        raise ValueError(f"a maximum PDU length of {max_pdu_length} leaves no room for data")
    return max_pdu_length - 6


def pdu_header(context_id: int, last: bool, length: int) -> bytes:
    """The 12 bytes before a data set fragment of ``length`` bytes (P-DATA-TF with one PDV)."""
    control = _DATA_LAST if last else _DATA_NOT_LAST
    return struct.pack(">BBIIBB", 0x04, 0x00, length + 6, length + 2, context_id, control)


def message_pdus(context_id: int, command: bytes, data: bytes | None, max_pdu_length: int) -> list[bytes]:
    """The P-DATA-TF PDUs of an encoded command set and in-memory data set, as pynetdicom makes them.

    One PDV per PDU, fragments of ``max_pdu_length - 6`` bytes (one fragment when
    it is 0, unlimited), the command's control headers 0x01 / 0x03 (last), the data
    set's 0x00 / 0x02; ``data`` ``None`` or empty: no data set PDU
    (``DIMSEMessage.encode_msg``).

    Parameters
    ----------
    context_id : int
        The presentation context ID of the message.
    command : bytes
        The encoded command set (Implicit VR Little Endian).
    data : bytes or None
        The encoded data set.
    max_pdu_length : int
        The peer's maximum PDU length (0: unlimited).

    Returns
    -------
    list of bytes
        The PDUs, in order.
    """
    size = max(len(command), len(data or b"")) if max_pdu_length == 0 else fragment_length(max_pdu_length)
    pdus: list[bytes] = []
    for payload, more, last in ((command, 0x01, 0x03), (data or b"", _DATA_NOT_LAST, _DATA_LAST)):
        starts = range(0, len(payload), size)
        for start in starts:
            chunk = payload[start : start + size]
            control = last if start == starts[-1] else more
            pdus.append(
                struct.pack(">BBIIBB", 0x04, 0x00, len(chunk) + 6, len(chunk) + 2, context_id, control)
            )
            pdus[-1] += chunk
    return pdus


def write_stored_message(
    sock: socket.socket,
    command_pdus: Sequence[bytes],
    path: Path,
    offset: int,
    context_id: int,
    max_pdu_length: int,
    stall_timeout_s: float,
) -> int:
    """Write ``command_pdus`` then the data set of ``path`` (from ``offset``) as P-DATA-TF PDUs.

    Parameters
    ----------
    sock : socket.socket
        A connected plain TCP socket (:func:`supported`).
    command_pdus : sequence of bytes
        The encoded P-DATA-TF PDUs of the command set.
    path : Path
        The stored file.
    offset : int
        Where its data set starts (after the File Meta Information).
    context_id : int
        The presentation context ID of the message.
    max_pdu_length : int
        The peer's maximum PDU length (0: unlimited).
    stall_timeout_s : float
        Longest wait for the socket to take more bytes.

    Returns
    -------
    int
        The number of data set PDUs written.

    Raises
    ------
    OSError
        The connection failed (``TimeoutError`` when it stalled), or the file
        could not be read. Part of the message may have been written.
    """
    fragment = fragment_length(max_pdu_length)
    writer = _Writer(sock, stall_timeout_s)
    with path.open("rb", buffering=0) as f:
        remaining = f.seek(0, os.SEEK_END) - offset
        f.seek(offset)
        if remaining <= 0:
            # As pynetdicom: an empty data set is still one (last) fragment.
            writer.write([*command_pdus, pdu_header(context_id, True, 0)])
            return 1
        per_block = max(1, BLOCK_BYTES // fragment)
        view = _block(min(remaining, per_block * fragment))
        full_header = pdu_header(context_id, False, fragment)
        buffers: list[bytes | memoryview] = list(command_pdus)
        pdus = 0
        while remaining > 0:
            size = _read_exactly(f, view[: min(remaining, len(view))])
            remaining -= size
            for start in range(0, size, fragment):
                chunk = view[start : min(start + fragment, size)]
                if remaining == 0 and start + fragment >= size:
                    buffers.append(pdu_header(context_id, True, len(chunk)))
                else:  # only the last fragment can be short: a block holds whole fragments
                    buffers.append(full_header)
                buffers.append(chunk)
                pdus += 1
            writer.write(buffers)  # returns once the kernel has every byte: the block may be reused
            buffers = []
        return pdus


_blocks = threading.local()


def _block(size: int) -> memoryview:
    """A buffer of ``size`` bytes, the calling thread's own, kept for its next message.

    A new buffer for every file costs its page faults each time (a 4 MiB buffer is
    1,024 pages, touched once per send). The kept buffer is at most
    :data:`BLOCK_BYTES`; a larger block (a peer whose maximum PDU is larger) is
    allocated for that message alone.
    """
    if size > BLOCK_BYTES:
        return memoryview(bytearray(size))
    buffer: bytearray | None = getattr(_blocks, "buffer", None)
    if buffer is None:
        buffer = bytearray(BLOCK_BYTES)
        _blocks.buffer = buffer
    return memoryview(buffer)[:size]


def write_buffers(sock: socket.socket, buffers: Sequence[bytes], stall_timeout_s: float) -> None:
    """Write ``buffers`` (whole PDUs, in order) onto ``sock``, many per ``sendmsg``, stalls bounded.

    Parameters
    ----------
    sock : socket.socket
        A connected plain TCP socket (:func:`supported`).
    buffers : sequence of bytes
        What to write, in order.
    stall_timeout_s : float
        Longest wait for the socket to take more bytes.

    Raises
    ------
    OSError
        The connection failed (``TimeoutError`` when it stalled); part may have been written.
    """
    _Writer(sock, stall_timeout_s).write(list(buffers))


def _read_exactly(f: object, into: memoryview) -> int:
    total = 0
    while total < len(into):
        got = f.readinto(into[total:])  # type: ignore[attr-defined]
        if not got:
            raise OSError(f"the file ended {len(into) - total} bytes early (changed while being sent?)")
        total += got
    return total


class _Writer:
    """``sendmsg`` of buffer lists, partial sends resumed, stalls bounded."""

    def __init__(self, sock: socket.socket, stall_timeout_s: float):
        self.sock = sock
        self.stall_timeout_s = stall_timeout_s
        self.iov_max = iov_max()
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLOUT)

    def write(self, buffers: list[bytes | memoryview]) -> None:
        index = 0
        while index < len(buffers):
            try:
                sent = self.sock.sendmsg(buffers[index : index + self.iov_max], (), socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._wait_writable()
                continue
            while sent:
                length = len(buffers[index])
                if sent >= length:
                    sent -= length
                    index += 1
                else:
                    buffers[index] = memoryview(buffers[index])[sent:]
                    sent = 0
            # A zero-length buffer (an empty last fragment) is skipped above only once reached.
            while index < len(buffers) and len(buffers[index]) == 0:
                index += 1

    def _wait_writable(self) -> None:
        deadline = time.monotonic() + self.stall_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the peer took no data for {self.stall_timeout_s:g} s")
            events = self.poller.poll(left * 1000.0)
            if any(mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, mask in events):
                raise BrokenPipeError("the connection was closed while sending")
            if events:
                return
