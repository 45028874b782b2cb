"""Fuzz suite: 5,000 seeded hostile conversations; after every batch the receiver is whole.

The receiver runs as ``usarchive serve`` in its own process, so its
descriptors and RSS are its own (pytest keeps every log record and warning
of a test in memory, which would swamp an in-process measurement).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bridge_helpers import dataset_bytes, start_serve_process, wait_for, write_clip
from fuzz_cases import FuzzCase, generate
from pydicom.uid import generate_uid
from raw_peer import RawPeer, connections_to, echo_command, open_fds, p_data, rss_bytes, spool_files

from archive.archive import Archive
from archive.settings import ArchiveSettings

#: Cases in all, and per batch (the receiver is checked after each batch).
FUZZ_CASES = int(os.environ.get("USARCHIVE_FUZZ_CASES", "5000"))
BATCH = 500
FUZZ_SEED = int(os.environ.get("USARCHIVE_FUZZ_SEED", "1313"))
#: The server may grow by at most this much from the first batch's check to any later one.
RSS_BOUND = 50 * 1024 * 1024


def _run_case(port: int, case: FuzzCase) -> str:
    """Send one case, close our side, read until the receiver closes; what the receiver answered."""
    try:
        with RawPeer(port, timeout_s=15.0) as peer:
            if case.associate_first and peer.associate() != 0x02:
                return "not-associated"
            peer.send(case.payload)
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_WR)
            last = "closed"
            while (pdu := peer.read_pdu()) is not None:
                last = f"pdu-{pdu[0]:02x}"
            return last
    except OSError as exc:
        return f"os-error-{type(exc).__name__}"


def _check_whole(port: int, pid: int, data_dir: Path, tmp_path: Path, fds: int, rss: int) -> None:
    uid = generate_uid()
    clip = dataset_bytes(write_clip(tmp_path / "probe.dcm", frames=2, sop_instance_uid=uid))
    with RawPeer(port, source="127.0.0.2") as peer:
        assert peer.associate() == 0x02, "the receiver no longer accepts associations"
        peer.send(p_data((3, 0x03, echo_command())))
        assert peer.read_status() == 0x0000, "C-ECHO failed"
        assert peer.store(uid, clip) == 0x0000, "a valid clip was not stored"
        assert peer.release()
    with Archive.open(ArchiveSettings(data_dir=data_dir)) as archive:
        assert archive.index.show(uid) is not None, "the acknowledged clip is not in the archive"
    wait_for(lambda: connections_to(port) == 0, timeout_s=30.0, what="every connection to end")
    wait_for(lambda: open_fds(pid) <= fds, timeout_s=30.0, what=f"descriptors back to {fds}")
    staging = data_dir / "store" / ".tmp"
    wait_for(lambda: spool_files(staging) == [], timeout_s=30.0, what="no spool file left")
    grown = rss_bytes(pid) - rss
    assert grown < RSS_BOUND, f"the server's RSS grew by {grown / 2**20:.0f} MiB"


def test_fuzz_5000_cases_in_batches_and_the_receiver_stays_whole(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process, port = start_serve_process(data_dir, ["--allow", "SCANNER"], log_path=tmp_path / "serve.log")
    try:
        pid = process.pid
        clip = dataset_bytes(write_clip(tmp_path / "seed.dcm", frames=2))
        # A first batch warms the server up (imports, caches, thread stacks); the baseline follows it.
        cases = list(generate(FUZZ_SEED, FUZZ_CASES + BATCH, clip))
        outcomes: Counter[str] = Counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            for start in range(0, len(cases), BATCH):
                batch = cases[start : start + BATCH]
                for case, outcome in zip(batch, pool.map(lambda c: _run_case(port, c), batch), strict=True):
                    outcomes[f"{case.kind}:{outcome}"] += 1
                if start == 0:
                    _check_whole(port, pid, data_dir, tmp_path, 10**6, 10**12)
                    fds, rss = open_fds(pid), rss_bytes(pid)
                else:
                    _check_whole(port, pid, data_dir, tmp_path, fds, rss)
        assert process.poll() is None, "the server died"
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert sum(outcomes.values()) - BATCH >= min(FUZZ_CASES, 5000)
    # Every kind of case was exercised, and none left the client hanging on an error of its own.
    kinds = {key.partition(":")[0] for key in outcomes}
    assert len(kinds) == 13, kinds
    assert not [key for key in outcomes if "os-error-TimeoutError" in key], outcomes
