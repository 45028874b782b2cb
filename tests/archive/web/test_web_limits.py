"""Slow and many clients against a live ``usarchive web``: raw sockets on a free loopback port.

The server runs with short bounds (head 1 s, body 1 s and 2,000 bytes/s,
few connections). A slow client is paced by ``select`` on its own socket
(it sends the next byte when the server has not answered within 10 ms), so
the tests wait only as long as the server's bounds make them.
"""

from __future__ import annotations

import asyncio
import io
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.uid import generate_uid
from starlette.types import Message
from web_served import Served, start_served

from archive.config import load_configuration
from archive.errors import ConfigError
from archive.index import schema
from archive.web.errors import WebRequestError
from archive.web.limits import ConnectionLimits, bounded_receive
from archive.web.server import WebServer
from archive.web.settings import WebSettings

HEAD_S = 1.0
BODY_S = 1.0
RATE = 2000
#: Longest the tests allow beyond a bound (a loaded machine).
SLACK_S = 5.0


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("web-limits")
    limits = ConnectionLimits(header_timeout_s=HEAD_S, body_timeout_s=BODY_S, body_min_rate=RATE)
    settings = WebSettings(port=0, access_log=directory / "access.log", limits=limits)
    running = start_served(directory, f"sqlite:///{directory / 'index.sqlite'}", settings)
    try:
        yield running
    finally:
        running.server.stop()
        running.archive.close()


def _connect(server: WebServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HEAD_S + SLACK_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (socket timeout: the test fails).

    A reset counts as closed: a server that closes with the client's bytes unread resets.
    """
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def _dribble(sock: socket.socket, data: bytes, *, while_waiting: object = None) -> int:
    """Send ``data`` a byte at a time until the server answers; the number of bytes sent."""
    sent = 0
    while sent < len(data):
        readable, _, _ = select.select([sock], [], [], 0.01)
        if readable:
            return sent
        try:
            sock.sendall(data[sent : sent + 1])
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += 1
        if sent == 20 and callable(while_waiting):
            while_waiting()
    return sent


def _head(served: Served, method: str, *, length: int | None = None, role: str = "reader") -> bytes:
    path = served.url.split(f":{served.server.port}", 1)[1]
    lines = [
        f"{method} {path}/studies HTTP/1.1",
        f"Host: 127.0.0.1:{served.server.port}",
        f"Authorization: Bearer {served.tokens[role]}",
        "X-Padding: " + "p" * 400,
    ]
    if length is not None:
        boundary = "limits-test"
        lines += [
            f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}',
            f"Content-Length: {length}",
        ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _normal_request(served: Served) -> None:
    answer = requests.get(
        served.url + "/studies", headers={"Authorization": f"Bearer {served.tokens['reader']}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text


def _stow_body(served: Served) -> tuple[bytes, str]:
    ds = pydicom.dcmread(served.samples["l4_single_frame_rgb"])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    part = b"--limits-test\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue() + b"\r\n"
    return part + b"--limits-test--\r\n", ds.SOPInstanceUID


def _indexed(served: Served, uid: str) -> bool:
    with served.archive.engine.connect() as connection:
        row = connection.execute(
            schema.instance.select().where(schema.instance.c.sop_instance_uid == uid)
        ).first()
    return row is not None


def _spooled(served: Served) -> list[Path]:
    return sorted(Path(served.archive.staging_dir).glob("stow-*"))


def test_half_a_head_then_silence_is_answered_408_and_closed(bounded: Served) -> None:
    with _connect(bounded.server) as sock:
        started = time.monotonic()
        sock.sendall(_head(bounded, "GET")[:60])
        answer = _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"header_timeout_s" in answer and b"connection: close" in answer.lower()
    assert HEAD_S * 0.9 <= elapsed < HEAD_S + SLACK_S


def test_a_head_dribbled_byte_by_byte_is_cut_off_meanwhile_others_are_served(bounded: Served) -> None:
    head = _head(bounded, "GET")
    served_meanwhile = []
    with _connect(bounded.server) as sock:
        started = time.monotonic()
        sent = _dribble(sock, head, while_waiting=lambda: served_meanwhile.append(_normal_request(bounded)))
        answer = _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert sent < len(head), "the whole head went through: the bound did not act"
    assert served_meanwhile == [None]
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert elapsed < HEAD_S + SLACK_S


def test_the_next_head_on_a_kept_alive_connection_is_timed_too(bounded: Served) -> None:
    with _connect(bounded.server) as sock:
        sock.sendall(_head(bounded, "GET"))
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        head, _, body = first.partition(b"\r\n\r\n")
        fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
        length = int(fields[b"content-length"])
        while len(body) < length:
            body += sock.recv(65536)
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        answer = _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert HEAD_S * 0.9 <= elapsed < HEAD_S + SLACK_S


def test_a_stow_body_dribbled_byte_by_byte_is_cut_off_and_nothing_stored(bounded: Served) -> None:
    body, uid = _stow_body(bounded)
    served_meanwhile = []
    with _connect(bounded.server) as sock:
        sock.sendall(_head(bounded, "POST", length=len(body), role="admin"))
        started = time.monotonic()
        sent = _dribble(sock, body, while_waiting=lambda: served_meanwhile.append(_normal_request(bounded)))
        answer = _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert served_meanwhile == [None]
    assert sent < RATE * (BODY_S + SLACK_S), "the server took more than the rate allows"
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"body_min_rate" in answer and b"connection: close" in answer.lower()
    assert elapsed < BODY_S + SLACK_S
    assert not _indexed(bounded, uid)
    assert _spooled(bounded) == []
    log = bounded.access_log.read_text().splitlines()
    assert any("token=admin" in line and "POST" in line and "status=408" in line for line in log)

    # the same body at full speed is stored
    answer2 = requests.post(
        bounded.url + "/studies",
        data=body,
        headers={
            "Authorization": f"Bearer {bounded.tokens['admin']}",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=limits-test',
        },
        timeout=60,
    )
    assert answer2.status_code == 200, answer2.text
    assert _indexed(bounded, uid)


def test_a_stow_body_that_stops_is_cut_off_after_the_pause_allowed(bounded: Served) -> None:
    body, uid = _stow_body(bounded)
    with _connect(bounded.server) as sock:
        sock.sendall(_head(bounded, "POST", length=len(body), role="admin") + body[:5000])
        started = time.monotonic()
        answer = _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert BODY_S * 0.9 <= elapsed < BODY_S + SLACK_S
    assert not _indexed(bounded, uid)
    assert _spooled(bounded) == []


def test_an_unread_body_after_the_answer_is_cut_off(bounded: Served) -> None:
    """A GET with a body the application never reads: answered, then closed when the body lingers."""
    with _connect(bounded.server) as sock:
        sock.sendall(_head(bounded, "GET", length=10_000_000)[:-2] + b"\r\n" + b"x" * 100)
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        sent = _dribble(sock, b"y" * 100_000)
        _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert sent < 100_000
    assert elapsed < BODY_S + SLACK_S


def test_connections_beyond_the_cap_are_refused_and_idle_ones_freed(bounded: Served, tmp_path: Path) -> None:
    cap = 3
    settings = WebSettings(
        port=0,
        access_log=tmp_path / "access.log",
        limits=ConnectionLimits(header_timeout_s=2.0, max_connections=cap),
    )
    server = WebServer(bounded.archive, settings)
    server.start()
    try:
        idle = [_connect(server) for _ in range(cap)]
        with _connect(server) as extra:
            refused = _read_until_closed(extra)
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        assert b"max_connections" in refused
        for sock in idle:  # each idle one is closed by the head timer, freeing its place
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
            sock.close()
        deadline = time.monotonic() + SLACK_S
        while True:  # the server notices the closed connections on its next loop turns
            answer = requests.get(
                server.url + "/studies",
                headers={"Authorization": f"Bearer {bounded.tokens['reader']}"},
                timeout=30,
            )
            if answer.status_code != 503 or time.monotonic() > deadline:
                break
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()


def test_the_bounds_come_from_the_web_section_and_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "usarchive.toml"
    config.write_text(
        "[web]\nheader_timeout_s = 5\nbody_timeout_s = 7\n"
        "body_min_rate = 1\nmax_connections = 12\nkeep_alive_timeout_s = 9\nuvicorn_patches = false\n",
        encoding="utf-8",
    )
    settings = WebSettings.from_configuration(load_configuration(config_path=config, environ={}))
    assert not settings.uvicorn_patches
    assert settings.limits == ConnectionLimits(
        header_timeout_s=5, body_timeout_s=7, body_min_rate=1, max_connections=12, keep_alive_timeout_s=9
    )
    defaults = WebSettings.from_configuration(load_configuration(data_dir=tmp_path / "d", environ={}))
    assert defaults.limits == ConnectionLimits() and defaults.uvicorn_patches
    config.write_text(
        config.read_text(encoding="utf-8").replace("max_connections = 12", "max_connections = 0")
    )
    with pytest.raises(ConfigError, match=r"usarchive.toml:\d+.*max_connections: expected a whole number"):
        WebSettings.from_configuration(load_configuration(config_path=config, environ={}))
    with pytest.raises(ConfigError, match=r"header_timeout_s: expected a number of seconds above 0"):
        WebSettings(limits=ConnectionLimits(header_timeout_s=0)).check()


def test_after_the_body_receive_is_not_timed() -> None:
    """Starlette waits in receive() for a disconnect while it streams an answer: that wait is unbounded."""
    limits = ConnectionLimits(body_timeout_s=0.05)

    async def run() -> list[Message]:
        loop = asyncio.get_running_loop()
        messages: list[Message] = [{"type": "http.request", "body": b"abc", "more_body": False}]
        disconnect: asyncio.Future[Message] = loop.create_future()

        async def receive() -> Message:
            if messages:
                return messages.pop(0)
            return await disconnect

        loop.call_later(0.3, disconnect.set_result, {"type": "http.disconnect"})  # six bounds later
        bounded = bounded_receive(receive, limits)
        return [await bounded(), await bounded()]

    first, second = asyncio.run(run())
    assert first["body"] == b"abc" and second["type"] == "http.disconnect"


def test_a_pause_in_the_body_raises_408() -> None:
    limits = ConnectionLimits(body_timeout_s=0.05, body_min_rate=0)

    async def run() -> None:
        never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        parts: list[Message] = [{"type": "http.request", "body": b"abc", "more_body": True}]

        async def receive() -> Message:
            return parts.pop(0) if parts else await never

        bounded = bounded_receive(receive, limits)
        assert (await bounded())["body"] == b"abc"
        await bounded()

    with pytest.raises(WebRequestError, match=r"3 bytes in .* body_timeout_s") as caught:
        asyncio.run(run())
    assert caught.value.status == 408
