"""Fuzz suite: 5,000 seeded hostile conversations; after every batch the receiver is whole."""

from __future__ import annotations

import contextlib
import os
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bridge_helpers import dataset_bytes, wait_for, write_clip
from fuzz_cases import FuzzCase, generate
from pydicom.uid import generate_uid
from raw_peer import RawPeer, echo_command, open_fds, p_data, rss_bytes, spool_files

from archive.archive import Archive
from pacs_bridge.server import BridgeServer

#: Cases in all, and per batch (the receiver is checked after each batch).
FUZZ_CASES = int(os.environ.get("USARCHIVE_FUZZ_CASES", "5000"))
BATCH = 500
FUZZ_SEED = int(os.environ.get("USARCHIVE_FUZZ_SEED", "1313"))
#: The test process (client and server) may grow by at most this much over the run.
RSS_BOUND = 150 * 1024 * 1024


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


def _check_whole(bridge: BridgeServer, archive: Archive, tmp_path: Path, fds: int, rss: int) -> None:
    uid = generate_uid()
    clip = dataset_bytes(write_clip(tmp_path / "probe.dcm", frames=2, sop_instance_uid=uid))
    with RawPeer(bridge.port) as peer:
        assert peer.associate() == 0x02, "the receiver no longer accepts associations"
        peer.send(p_data((3, 0x03, echo_command())))
        assert peer.read_status() == 0x0000, "C-ECHO failed"
        assert peer.store(uid, clip) == 0x0000, "a valid clip was not stored"
        assert peer.release()
    assert archive.show(uid) is not None
    wait_for(lambda: bridge.active_associations == 0, timeout_s=30.0, what="every association to end")
    wait_for(lambda: open_fds() <= fds, timeout_s=30.0, what=f"descriptors back to {fds}")
    wait_for(lambda: spool_files(archive.staging_dir) == [], timeout_s=30.0, what="no spool file left")
    grown = rss_bytes() - rss
    assert grown < RSS_BOUND, f"RSS grew by {grown / 2**20:.0f} MiB"


def test_fuzz_5000_cases_in_batches_and_the_receiver_stays_whole(
    bridge: BridgeServer, archive: Archive, tmp_path: Path
) -> None:
    clip = dataset_bytes(write_clip(tmp_path / "seed.dcm", frames=2))
    _check_whole(bridge, archive, tmp_path, open_fds() + 64, rss_bytes() + RSS_BOUND)  # warm-up
    fds, rss = open_fds(), rss_bytes()
    outcomes: Counter[str] = Counter()
    cases = list(generate(FUZZ_SEED, FUZZ_CASES, clip))
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(cases), BATCH):
            batch = cases[start : start + BATCH]
            for case, outcome in zip(
                batch, pool.map(lambda c: _run_case(bridge.port, c), batch), strict=True
            ):
                outcomes[f"{case.kind}:{outcome}"] += 1
            _check_whole(bridge, archive, tmp_path, fds, rss)
    assert sum(outcomes.values()) == FUZZ_CASES >= 5000 or "USARCHIVE_FUZZ_CASES" in os.environ
    # Every kind of case was exercised, and none left the client hanging on an error of its own.
    kinds = {key.partition(":")[0] for key in outcomes}
    assert len(kinds) == 13, kinds
    assert not [key for key in outcomes if "os-error-TimeoutError" in key], outcomes
