"""Hostile and broken peers: nothing leaks, memory stays bounded, scanners are never locked out."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bridge_helpers import USARCHIVE, dataset_bytes, run, start_serve_process, storescu, wait_for, write_clip
from fuzz_cases import nested_sequences
from pydicom.uid import generate_uid
from pynetdicom import AE
from raw_peer import (
    US_MULTIFRAME,
    VERIFICATION,
    RawPeer,
    associate_rq,
    connections_to,
    echo_command,
    open_fds,
    p_data,
    rss_bytes,
    spool_files,
    store_command,
)

from archive.archive import Archive
from archive.index.queries import Query
from archive.settings import ArchiveSettings
from pacs_bridge.config import BridgeSettings
from pacs_bridge.server import BridgeServer

MiB = 1024 * 1024


def _unnegotiated_store(port: int, clip_bytes: bytes) -> None:
    """Associate, then send a C-STORE (command and data) on context 99, which was never proposed."""
    with RawPeer(port) as peer:
        assert peer.associate() == 0x02
        peer.send(p_data((99, 0x03, store_command(generate_uid()))) + p_data((99, 0x02, clip_bytes)))
        answer = peer.read_pdu()
        assert answer is None or answer[0] == 0x07, f"expected an A-ABORT, got {answer}"


def test_a_store_on_an_unnegotiated_context_is_aborted_and_leaves_nothing(
    bridge: BridgeServer, archive: Archive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = dataset_bytes(write_clip(tmp_path / "c.dcm", frames=2))
    baseline = open_fds()
    with RawPeer(bridge.port) as peer:
        assert peer.associate() == 0x02
        peer.send(p_data((99, 0x03, store_command(generate_uid()))))
        answer = peer.read_pdu()
        assert answer is not None and answer[0] == 0x07, "expected an A-ABORT"
        assert peer.read_pdu() is None, "the receiver closes the connection after the abort"
    for _ in range(20):
        _unnegotiated_store(bridge.port, clip)
    wait_for(lambda: bridge.active_associations == 0, what="the associations to end")
    wait_for(lambda: open_fds() <= baseline, what="the descriptors to be closed")
    assert spool_files(archive.staging_dir) == []
    assert "presentation context 99, which was not accepted" in caplog.text
    assert "SCANNER@127.0.0.1" in caplog.text, "the violation is logged with the peer"


@pytest.mark.parametrize("flip", [0, 9, 17, 40, 70, 100])
def test_a_bit_flipped_command_set_leaves_nothing(
    bridge: BridgeServer, archive: Archive, tmp_path: Path, flip: int
) -> None:
    clip = dataset_bytes(write_clip(tmp_path / "c.dcm", frames=2))
    baseline = open_fds()
    command = bytearray(store_command(generate_uid()))
    command[flip % len(command)] ^= 0xFF
    with RawPeer(bridge.port) as peer:
        assert peer.associate() == 0x02
        peer.send(p_data((1, 0x03, bytes(command))) + p_data((1, 0x02, clip)))
        peer.sock.shutdown(socket.SHUT_WR)
        while peer.read_pdu() is not None:
            pass
    wait_for(lambda: bridge.active_associations == 0, what="the association to end")
    wait_for(lambda: open_fds() <= baseline, what="the descriptors to be closed")
    wait_for(lambda: spool_files(archive.staging_dir) == [], what="the spool files to go")
    _assert_serving(bridge.port, tmp_path, archive)


def _assert_serving(port: int, tmp_path: Path, archive: Archive, *, source: str = "127.0.0.1") -> None:
    """The receiver answers C-ECHO and stores a valid clip."""
    uid = generate_uid()
    clip = dataset_bytes(write_clip(tmp_path / f"{uid}.dcm", frames=2, sop_instance_uid=uid))
    with RawPeer(port, source=source) as peer:
        assert peer.associate() == 0x02
        peer.send(p_data((3, 0x03, echo_command())))
        assert peer.read_status() == 0x0000
        assert peer.store(uid, clip) == 0x0000
        assert peer.release()
    assert archive.index.show(uid) is not None, "the acknowledged clip is in the archive"


def test_a_calling_ae_title_with_a_control_character_is_rejected_reason_3(
    bridge: BridgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    with RawPeer(bridge.port) as peer:
        assert peer.associate(associate_rq(calling=b"\tSCANNER")) == 0x03
    with RawPeer(bridge.port) as peer:
        peer.send(associate_rq(calling=b"\tSCANNER"))
        answer = peer.read_pdu()
    assert answer is not None and answer[0] == 0x03
    result, source, reason = answer[1][1], answer[1][2], answer[1][3]
    assert (result, source, reason) == (1, 1, 3)
    assert "control characters" in caplog.text
    with RawPeer(bridge.port) as peer:
        assert peer.associate(associate_rq(calling=b"SCANNER")) == 0x02, "the plain title is still allowed"


def test_an_oversized_associate_request_is_aborted_before_it_is_read(
    bridge: BridgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    with RawPeer(bridge.port) as peer:
        peer.send(struct.pack(">BBL", 0x01, 0, 1 << 30) + b"\0" * 65536)
        answer = peer.read_pdu()
    assert answer is None or answer[0] == 0x07
    assert "declares 1073741824 bytes, more than max_associate_rq_bytes" in caplog.text


def test_an_allowed_peers_oversized_p_data_is_aborted(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_bridge(bridge_settings, max_pdu_bytes=65536)
    with RawPeer(server.port) as peer:
        assert peer.associate() == 0x02
        peer.send(struct.pack(">BBL", 0x04, 0, 65537) + b"\0" * 65537)
        answer = peer.read_pdu()
    assert answer is not None and answer[0] == 0x07
    assert "the negotiated maximum PDU length (max_pdu_bytes) (65536)" in caplog.text


def test_a_silent_connection_is_closed_after_the_associate_timeout(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings
) -> None:
    server = start_bridge(bridge_settings, associate_timeout_s=0.5)
    started = time.monotonic()
    with RawPeer(server.port) as peer:
        peer.send(associate_rq()[:20])  # a trickle that never completes
        assert peer.read_pdu() is None
    assert time.monotonic() - started < 5.0
    wait_for(lambda: server.active_associations == 0, what="the connection to be gone")


def test_an_idle_association_is_aborted_after_the_network_timeout(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings
) -> None:
    server = start_bridge(bridge_settings, network_timeout_s=0.5)
    with RawPeer(server.port) as peer:
        assert peer.associate() == 0x02
        answer = peer.read_pdu()
        assert answer is None or answer[0] == 0x07
    wait_for(lambda: server.active_associations == 0, what="the association to be gone")


def test_unassociated_connections_do_not_take_an_allowed_scanners_slot(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    archive: Archive,
    tmp_path: Path,
) -> None:
    server = start_bridge(bridge_settings, max_associations=2, max_connections_per_address=8)
    hostile = [RawPeer(server.port, source="127.0.0.3") for _ in range(8)]
    try:
        wait_for(lambda: server.active_associations >= 8, what="the silent connections to be accepted")
        _assert_serving(server.port, tmp_path, archive, source="127.0.0.2")
    finally:
        for peer in hostile:
            peer.close()


def test_the_per_address_cap_closes_extra_connections_at_once(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_bridge(bridge_settings, max_connections_per_address=3)
    peers = [RawPeer(server.port) for _ in range(3)]
    try:
        wait_for(lambda: server.active_associations == 3, what="three connections")
        with RawPeer(server.port) as extra:
            assert extra.read_pdu() is None, "the fourth connection is closed without an answer"
        assert "max_connections_per_address" in caplog.text
    finally:
        for peer in peers:
            peer.close()


def test_lockout_200_silent_or_trickling_connections_and_a_scanner_from_another_address(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    archive: Archive,
    tmp_path: Path,
) -> None:
    server = start_bridge(bridge_settings, associate_timeout_s=3.0)
    hostile: list[socket.socket] = []
    for n in range(200):
        try:
            hostile.append(socket.create_connection(("127.0.0.1", server.port), timeout=5.0))
        except OSError:
            continue  # closed at once by the per-address cap: that is the point
        if n % 2:
            with contextlib.suppress(OSError):
                hostile[-1].send(associate_rq()[:1])  # trickling: one byte
    trickle_stop = threading.Event()

    def trickle() -> None:
        while not trickle_stop.wait(0.5):
            for sock in hostile[1::2]:
                with contextlib.suppress(OSError):
                    sock.send(b"\0")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        clip = write_clip(tmp_path / "scanner.dcm", frames=2)
        ae = AE("SCANNER")
        ae.add_requested_context(US_MULTIFRAME)
        ae.add_requested_context(VERIFICATION)
        started = time.monotonic()
        assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE", bind_address=("127.0.0.2", 0))
        assert assoc.is_established, "the scanner from 127.0.0.2 was locked out"
        from pydicom import dcmread

        status = assoc.send_c_store(dcmread(clip))
        assoc.release()
        elapsed = time.monotonic() - started
        assert status.Status == 0x0000
        assert elapsed < 5.0, f"the scanner's store took {elapsed:.1f} s"
        # After the ARTIM window every hostile connection is closed by the receiver.
        wait_for(
            lambda: server.active_associations == 0, timeout_s=15.0, what="the hostile connections to go"
        )
    finally:
        trickle_stop.set()
        trickler.join()
        for sock in hostile:
            sock.close()
    assert len(archive.index.find(Query())) == 1


# --- the receiver as a process: descriptors under prlimit, memory -------------------------------


def _serve(tmp_path: Path, *extra: str, prlimit: int | None = None) -> tuple[object, int]:
    data_dir = tmp_path / "data"
    args = ["--allow", "SCANNER", *extra]
    if prlimit is None:
        return start_serve_process(data_dir, args, log_path=tmp_path / "serve.log")
    return start_serve_process(
        data_dir, args, log_path=tmp_path / "serve.log", prefix=["prlimit", f"--nofile={prlimit}"]
    )


def test_leak_2000_unnegotiated_stores_then_a_valid_store_under_a_256_descriptor_limit(
    tmp_path: Path,
) -> None:
    process, port = _serve(tmp_path, prlimit=256)
    try:
        pid = process.pid  # type: ignore[attr-defined]
        clip = dataset_bytes(write_clip(tmp_path / "c.dcm", frames=2))
        assert storescu(port, [write_clip(tmp_path / "warm.dcm", seed=7)]).returncode == 0
        wait_for(lambda: connections_to(port) == 0, what="the warm-up association to end")
        baseline = open_fds(pid)
        with ThreadPoolExecutor(max_workers=4) as pool:  # 4 at a time: within the per-address cap
            list(pool.map(lambda _: _unnegotiated_store(port, clip), range(2000)))
        wait_for(lambda: open_fds(pid) <= baseline, timeout_s=30.0, what="descriptors back to baseline")
        staging = tmp_path / "data" / "store" / ".tmp"
        wait_for(lambda: spool_files(staging) == [], what="the spool directory back to empty")
        result = storescu(port, [write_clip(tmp_path / "after.dcm", seed=8)])
        assert result.returncode == 0, result.stderr
        assert "Too many open files" not in (tmp_path / "serve.log").read_text()
    finally:
        process.terminate()  # type: ignore[attr-defined]
        process.wait(timeout=30)  # type: ignore[attr-defined]


def test_memory_8_parallel_1gib_associate_requests_and_an_oversized_p_data(tmp_path: Path) -> None:
    process, port = _serve(tmp_path)
    try:
        pid = process.pid  # type: ignore[attr-defined]
        assert storescu(port, [write_clip(tmp_path / "warm.dcm", seed=3)]).returncode == 0
        wait_for(lambda: connections_to(port) == 0, what="the warm-up association to end")
        before = rss_bytes(pid)
        chunk = b"\0" * MiB
        aborted: list[bool] = []

        def flood(header: bytes, *, associate_first: bool) -> None:
            with RawPeer(port, timeout_s=30.0) as peer:
                if associate_first:
                    assert peer.associate() == 0x02
                sent_ok = peer.send(header)
                for _ in range(200):
                    if not (sent_ok and peer.send(chunk)):
                        break
                answer = peer.read_pdu()
                aborted.append(answer is None or answer[0] == 0x07)

        threads = [
            threading.Thread(
                target=flood, args=(struct.pack(">BBL", 0x01, 0, 1 << 30),), kwargs={"associate_first": False}
            )
            for _ in range(8)
        ]
        threads.append(
            threading.Thread(
                target=flood, args=(struct.pack(">BBL", 0x04, 0, 1 << 30),), kwargs={"associate_first": True}
            )
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert aborted == [True] * 9
        growth = rss_bytes(pid) - before
        assert growth < 50 * MiB, f"the server grew by {growth / MiB:.0f} MiB"
        assert storescu(port, [write_clip(tmp_path / "after.dcm", seed=4)]).returncode == 0
        log = (tmp_path / "serve.log").read_text()
        assert log.count("nothing of it was read") == 9
    finally:
        process.terminate()  # type: ignore[attr-defined]
        process.wait(timeout=30)  # type: ignore[attr-defined]


@pytest.mark.parametrize("depth", [3000])
def test_deeply_nested_data_set_is_answered_cannot_understand_with_a_reason(
    bridge: BridgeServer, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    caplog.set_level(logging.INFO, logger="pacs_bridge")
    uid = generate_uid()
    with RawPeer(bridge.port) as peer:
        assert peer.associate() == 0x02
        status = peer.store(uid, nested_sequences(uid, depth))
        assert peer.release(), "the association survives"
    assert status == 0xC000
    assert "nested too deeply" in caplog.text


def test_serve_on_an_unusable_data_directory_is_a_one_line_error(tmp_path: Path) -> None:
    result = run(
        [USARCHIVE, "--data-dir", "/proc/usarchive-missing/data", "serve", "--allow", "X", "--port", "0"]
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no archive at /proc/usarchive-missing/data" in errors[0]
    assert "usarchive init /proc/usarchive-missing/data" in errors[0], "the message says what to do"


def test_serve_on_an_archive_whose_store_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    subprocess.run([USARCHIVE, "--data-dir", str(data_dir), "init"], check=True, capture_output=True)
    # root ignores permission bits: a file where the store's staging directory belongs cannot be bypassed
    staging = data_dir / "store" / ".tmp"
    if staging.is_dir():
        shutil.rmtree(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.write_text("a file where the staging directory should be")
    result = run([USARCHIVE, "--data-dir", str(data_dir), "serve", "--allow", "X", "--port", "0"])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr


def test_a_spool_directory_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    from pacs_bridge.spool import SpoolDirectory, SpoolUnavailableError

    blocker = tmp_path / "staging"
    blocker.write_text("a file where the staging directory should be")
    with pytest.raises(SpoolUnavailableError, match="cannot create the receiver's spool directory"):
        SpoolDirectory(blocker)


def test_the_self_check_removes_spool_files_of_no_live_association(archive: Archive) -> None:
    from pacs_bridge.spool import SpoolDirectory

    spool = SpoolDirectory(archive.staging_dir)
    try:
        dead_owner = threading.Thread(target=lambda: None)
        orphan = spool.create(dead_owner)
        live = spool.create(threading.current_thread())
        stray = spool.path / "stray.dcm"
        stray.write_bytes(b"left behind")
        assert spool.sweep_orphans(lambda owner: owner is threading.current_thread(), min_age_s=0.0) == 2
        assert not Path(orphan.name).exists() and not stray.exists()
        assert Path(live.name).exists(), "the live association's file is kept"
        live.close()
    finally:
        spool.close()


def test_a_locked_sqlite_index_is_answered_index_busy_within_the_bound(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    archive_settings: ArchiveSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_bridge(bridge_settings, index_busy_timeout_s=1.0)
    index = archive_settings.data_dir / "index.sqlite"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(index)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        uid = generate_uid()
        clip = dataset_bytes(write_clip(tmp_path / "c.dcm", frames=2, sop_instance_uid=uid))
        with RawPeer(server.port) as peer:
            assert peer.associate() == 0x02
            started = time.monotonic()
            peer.send(p_data((1, 0x03, store_command(uid))) + p_data((1, 0x02, clip)))
            status = peer.read_status()
            elapsed = time.monotonic() - started
            assert peer.release()
    finally:
        holder.communicate("", timeout=30)
    assert status == 0xA700
    assert elapsed < 5.0, f"the store waited {elapsed:.1f} s for the locked index"
    assert "index busy" in caplog.text
    with RawPeer(server.port) as peer:
        assert peer.associate() == 0x02
        assert peer.store(uid, clip) == 0x0000, "once the lock is gone the clip is stored"


def test_verify_removes_spool_files_of_a_dead_receiver_but_not_of_a_live_one(
    archive: Archive, archive_settings: ArchiveSettings
) -> None:
    from pacs_bridge.spool import SpoolDirectory

    live = SpoolDirectory(archive.staging_dir)
    try:
        live_file = live.create(threading.current_thread())
        dead = archive.staging_dir / "pacs_bridge" / "otherhost-999999-deadbeef"
        dead.mkdir()
        (dead / ".lock").write_bytes(b"")
        left_over = dead / "tmpleft.dcm"
        left_over.write_bytes(b"half a data set")
        data_dir = str(archive_settings.data_dir)
        report = run([USARCHIVE, "--data-dir", data_dir, "--json", "verify", "--stale-after", "0"])
        assert "pacs_bridge/otherhost-999999-deadbeef/tmpleft.dcm" in report.stdout
        assert Path(live_file.name).name not in report.stdout, "a live receiver's spool file is not stale"
        repaired = run([USARCHIVE, "--data-dir", data_dir, "verify", "--repair", "--stale-after", "0"])
        assert repaired.returncode in (0, 1), repaired.stderr
        assert not left_over.exists()
        assert Path(live_file.name).exists()
        live_file.close()
    finally:
        live.close()
