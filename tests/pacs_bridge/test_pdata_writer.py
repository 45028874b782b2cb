"""The P-DATA-TF writer on a socket pair: the PDUs parsed back, partial sends, stalls, odd sizes."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest

from pacs_bridge import pdata_writer


def _read_all(sock: socket.socket, chunk: int = 65536) -> bytes:
    parts = []
    while True:
        data = sock.recv(chunk)
        if not data:
            return b"".join(parts)
        parts.append(data)


def _parse(stream: bytes) -> list[tuple[int, int, int, bytes]]:
    """Every PDU of ``stream`` as (PDU length, context ID, message control header, fragment)."""
    pdus = []
    at = 0
    while at < len(stream):
        kind, _, length = struct.unpack(">BBI", stream[at : at + 6])
        assert kind == 0x04, f"not a P-DATA-TF PDU at {at}"
        item_length, context_id, control = struct.unpack(">IBB", stream[at + 6 : at + 12])
        assert item_length == length - 4, "one PDV per PDU, filling it"
        pdus.append((length, context_id, control, stream[at + 12 : at + 6 + length]))
        at += 6 + length
    assert at == len(stream), "the stream ends on a PDU boundary"
    return pdus


def _send(
    path: Path, offset: int, max_pdu: int, *, command: list[bytes] | None = None, sndbuf: int | None = None
) -> tuple[int, bytes]:
    writer_end, reader_end = socket.socketpair()
    if sndbuf is not None:
        writer_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        reader_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(_read_all(reader_end, 3000)))
    reader.start()
    try:
        pdus = pdata_writer.write_stored_message(writer_end, command or [], path, offset, 5, max_pdu, 10.0)
    finally:
        writer_end.close()
        reader.join(30)
        reader_end.close()
    return pdus, received[0]


@pytest.mark.parametrize("max_pdu", [4102, 4103, 16384, 131072, 0])
@pytest.mark.parametrize("size", [1, 4096, 4097, 9 * 1024 * 1024 + 13])
def test_fragments_reassemble_to_the_data_set_within_the_peers_limit(
    tmp_path: Path, max_pdu: int, size: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "f.dcm"
    path.write_bytes(b"M" * 100 + payload)
    command = [b"\x04\x00\x00\x00\x00\x08\x00\x00\x00\x04\x05\x03ab"]
    count, stream = _send(path, 100, max_pdu, command=command)
    assert stream.startswith(command[0])
    pdus = _parse(stream[len(command[0]) :])
    assert len(pdus) == count
    assert b"".join(fragment for _, _, _, fragment in pdus) == payload
    limit = max_pdu if max_pdu else pdata_writer.UNLIMITED_FRAGMENT + 6
    assert all(length <= limit for length, _, _, _ in pdus)
    assert all(cx == 5 for _, cx, _, _ in pdus)
    assert [control for _, _, control, _ in pdus] == [0x00] * (count - 1) + [0x02]


def test_an_empty_data_set_is_one_last_fragment(tmp_path: Path) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(b"M" * 10)
    count, stream = _send(path, 10, 16384)
    assert count == 1
    assert _parse(stream) == [(6, 5, 0x02, b"")]


def test_partial_sends_on_a_small_socket_buffer_lose_nothing(tmp_path: Path) -> None:
    payload = bytes(range(251)) * 20000  # 5 MB, not a multiple of anything here
    path = tmp_path / "f.dcm"
    path.write_bytes(payload)
    count, stream = _send(path, 0, 4102, sndbuf=4096)
    assert b"".join(fragment for _, _, _, fragment in _parse(stream)) == payload
    assert count == -(-len(payload) // 4096)


def test_a_peer_that_stops_reading_times_out(tmp_path: Path) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(bytes(8 * 1024 * 1024))
    writer_end, reader_end = socket.socketpair()
    try:
        with pytest.raises(TimeoutError):
            pdata_writer.write_stored_message(writer_end, [], path, 0, 1, 16384, 0.2)
    finally:
        writer_end.close()
        reader_end.close()


def test_a_closed_connection_raises_oserror(tmp_path: Path) -> None:
    path = tmp_path / "f.dcm"
    path.write_bytes(bytes(8 * 1024 * 1024))
    writer_end, reader_end = socket.socketpair()
    reader_end.close()
    try:
        with pytest.raises(OSError):
            pdata_writer.write_stored_message(writer_end, [], path, 0, 1, 16384, 5.0)
    finally:
        writer_end.close()


def test_only_plain_stream_sockets_are_supported() -> None:
    import ssl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        assert not pdata_writer.supported(datagram)
    with socket.socket() as plain:
        assert pdata_writer.supported(plain)
        context = ssl.create_default_context()
        wrapped = context.wrap_socket(socket.socket(), server_hostname="x", do_handshake_on_connect=False)
        try:
            assert not pdata_writer.supported(wrapped)
        finally:
            wrapped.close()
    assert not pdata_writer.supported(None)


def test_a_maximum_pdu_too_small_for_data_is_refused() -> None:
    with pytest.raises(ValueError):
        pdata_writer.fragment_length(6)
