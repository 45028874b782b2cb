"""Soak: valid senders mixed with hostile ones against ``usarchive serve``; nothing lost, nothing leaks.

Usage::

    python -m benchmarks.bench_soak [--rounds 40] [--minutes 30] [--out benchmarks/results]

Runs ``usarchive serve`` (SQLite, loopback) and, per round, for as long as
the round lasts: two valid senders from 127.0.0.2 (pynetdicom SCUs storing
small clips, one association per five clips), 20 silent connections from
127.0.0.3 (more than the per-address cap) and three hostile senders from 127.0.0.1, each with the seeded
fuzz generator of the tests (``tests/pacs_bridge/fuzz_cases.py``: garbage,
mutated A-ASSOCIATE-RQs, 1 GiB declared lengths, unnegotiated contexts,
bit-flipped command sets and data sets, deep nesting, endless command
fragments, the occasional slow sender). After each round the
server's open descriptors and RSS are sampled once every connection has
ended. It stops after ``--rounds`` rounds or ``--minutes``, whichever comes
first.

Pass criteria: every instance answered Success is in the index (acknowledged
= stored, counted through the archive), descriptors back to the first
round's count after every round, RSS growth from the first to the last round
under 50 MiB. Results go to ``soak.json`` and ``soak.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pacs_bridge"))  # the tests' seeded generator and raw peer


from bridge_helpers import dataset_bytes, write_clip  # noqa: E402
from fuzz_cases import generate  # noqa: E402
from raw_peer import RawPeer, open_fds, rss_bytes  # noqa: E402

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
RSS_GROWTH_BOUND = 50 * 1024 * 1024


def cpu_model() -> str:
    """The CPU model name and flags count from /proc/cpuinfo."""
    model, flags = "unknown", ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].strip()
    wanted = [f for f in ("avx2", "avx512f", "sha_ni", "aes") if f in flags.split()]
    return f"{model} (flags include: {', '.join(wanted) or 'none of avx2/avx512f/sha_ni/aes'})"


def _start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen[str], int]:
    usarchive = str(Path(sys.executable).with_name("usarchive"))
    command = [usarchive, "--data-dir", str(data_dir), "-v", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--allow", "SCANNER"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    assert process.stdout is not None
    match = re.search(r"listening on [^:]+:(\d+)", process.stdout.readline())
    if match is None:
        process.kill()
        raise SystemExit(f"usarchive serve did not start; see {log}")
    return process, int(match.group(1))


def _valid_sender(port: int, clips: list[Path], deadline: float, acknowledged: list[str]) -> None:
    ae = AE("SCANNER")
    ae.add_requested_context(US_MULTIFRAME)
    datasets = [dcmread(path) for path in clips]
    while time.monotonic() < deadline:
        assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE", bind_address=("127.0.0.2", 0))
        if not assoc.is_established:
            continue
        for ds in datasets:
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7133.77.{os.getpid()}.{time.monotonic_ns()}"
            status = assoc.send_c_store(ds)
            if status and status.Status == 0x0000:
                acknowledged.append(str(ds.SOPInstanceUID))
        assoc.release()


def _hostile_sender(port: int, seed: int, clip: bytes, deadline: float, counter: list[int]) -> None:
    rng = random.Random(seed)
    batch = 0
    while time.monotonic() < deadline:
        for case in generate(seed * 1000 + batch, 50, clip):
            if time.monotonic() >= deadline:
                return
            try:
                with RawPeer(port, timeout_s=15.0) as peer:
                    if case.associate_first and peer.associate() != 0x02:
                        continue
                    peer.send(case.payload)
                    if rng.random() < 0.05:
                        time.sleep(rng.uniform(0.1, 0.5))  # a slow one now and then
                    peer.sock.shutdown(socket.SHUT_WR)
                    while peer.read_pdu() is not None:
                        pass
            except OSError:
                pass
            counter[0] += 1
        batch += 1


def _silent_connections(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            sockets.append(
                socket.create_connection(("127.0.0.1", port), timeout=5.0, source_address=("127.0.0.3", 0))
            )
    return sockets


def _connections_to(port: int) -> int:
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] not in ("0A", "06"):
            count += 1
    return count


def _wait_quiet(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _connections_to(port) and time.monotonic() < deadline:
        time.sleep(0.1)


def _stored(data_dir: Path, uids: set[str]) -> tuple[int, int]:
    """How many of ``uids`` are in the archive's index, and how many instances it holds in all."""
    from archive.archive import Archive
    from archive.settings import ArchiveSettings

    with Archive.open(ArchiveSettings(data_dir=data_dir)) as archive:
        found = sum(1 for uid in uids if archive.index.show(uid) is not None)
        total = int(archive.index.stats()["instances"])
    return found, total


def run(rounds: int, minutes: float, round_s: float, workdir: Path) -> dict[str, Any]:
    """Run the soak; return its figures."""
    data_dir = workdir / "data"
    clip_dir = workdir / "clips"
    clip_dir.mkdir()
    clips = [write_clip(clip_dir / f"c{n}.dcm", seed=n, frames=4) for n in range(5)]
    raw_clip = dataset_bytes(clips[0])
    process, port = _start_server(data_dir, workdir / "serve.log")
    acknowledged: list[str] = []
    hostile_cases = [0]
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    try:
        for n in range(rounds):
            if time.monotonic() - started > minutes * 60:
                break
            deadline = time.monotonic() + round_s
            silent = _silent_connections(port, 20)
            with ThreadPoolExecutor(max_workers=5) as pool:
                futures = [pool.submit(_valid_sender, port, clips, deadline, acknowledged) for _ in range(2)]
                futures += [
                    pool.submit(_hostile_sender, port, n * 10 + k, raw_clip, deadline, hostile_cases)
                    for k in range(3)
                ]
                for future in futures:
                    future.result()
            for sock in silent:
                sock.close()
            _wait_quiet(port)
            samples.append(
                {
                    "round": n + 1,
                    "elapsed_s": round(time.monotonic() - started, 1),
                    "fds": open_fds(process.pid),
                    "rss_mib": round(rss_bytes(process.pid) / 2**20, 1),
                    "acknowledged": len(acknowledged),
                    "hostile_cases": hostile_cases[0],
                    "spool_files": len(list((data_dir / "store" / ".tmp" / "pacs_bridge").glob("*/*.dcm"))),
                }
            )
            print(json.dumps(samples[-1]), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
    stored, in_index = _stored(data_dir, set(acknowledged))
    log = (workdir / "serve.log").read_text()
    return {
        "samples": samples,
        "acknowledged": len(set(acknowledged)),
        "stored": stored,
        "in_index": in_index,
        "hostile_cases": hostile_cases[0],
        "aborts_logged": log.count("aborting the association"),
        "too_many_open_files": log.count("Too many open files"),
    }


def to_markdown(result: dict[str, Any], command: str, when: str, load: tuple[float, float, float]) -> str:
    """The BENCHMARKS.md section."""
    samples = result["samples"]
    first, last = samples[0], samples[-1]
    fds_flat = all(s["fds"] <= first["fds"] for s in samples)
    rss_growth = last["rss_mib"] - first["rss_mib"]
    lines = [
        "# soak: valid and hostile senders together",
        "",
        f"`{command}` — {when}; {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()}; "
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        "",
        "Two valid senders from 127.0.0.2 (pynetdicom, 5 clips per association), three hostile ones from "
        "127.0.0.1 (the tests' seeded fuzz generator) and 20 silent connections from 127.0.0.3 per round, "
        "against `usarchive serve` on SQLite. "
        "Descriptors, RSS and spool files of the server after each round, once every connection has ended.",
        "",
        "| round | elapsed s | server fds | server RSS MiB | spool files | acknowledged so far "
        "| hostile cases so far |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {s['round']} | {s['elapsed_s']} | {s['fds']} | {s['rss_mib']} | {s['spool_files']} | "
        f"{s['acknowledged']} | {s['hostile_cases']} |"
        for s in samples
    ]
    ok = result["acknowledged"] == result["stored"] and fds_flat and rss_growth < RSS_GROWTH_BOUND / 2**20
    lines += [
        "",
        "| measurement | value | target |",
        "|---|---:|---|",
        f"| instances acknowledged (Success) | {result['acknowledged']} | |",
        f"| of them in the index | {result['stored']} | = acknowledged: "
        f"{'yes' if result['acknowledged'] == result['stored'] else 'NO'} |",
        f"| instances in the index in all (hostile data sets that parsed too) | {result['in_index']} | |",
        f"| hostile conversations | {result['hostile_cases']} | |",
        f"| associations aborted for a violation (logged) | {result['aborts_logged']} | |",
        f"| server fds, first → last round | {first['fds']} → {last['fds']} | "
        f"flat: {'yes' if fds_flat else 'NO'} |",
        f"| server RSS growth, first → last round, MiB | {rss_growth:.1f} | < 50: "
        f"{'yes' if rss_growth < 50 else 'NO'} |",
        f'| "Too many open files" in the log | {result["too_many_open_files"]} | 0 |',
        "",
        f"Result: {'pass' if ok and result['too_many_open_files'] == 0 else 'FAIL'}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the soak and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--round-seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    command = "python -m benchmarks.bench_soak " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="usarchive-soak-") as tmp:
        result = run(args.rounds, args.minutes, args.round_seconds, Path(tmp))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    markdown = to_markdown(result, command.strip(), when, os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "soak.md").write_text(markdown)
    print(markdown)
    samples = result["samples"]
    failed = (
        result["acknowledged"] != result["stored"]
        or any(s["fds"] > samples[0]["fds"] for s in samples)
        or samples[-1]["rss_mib"] - samples[0]["rss_mib"] >= 50
        or result["too_many_open_files"]
    )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
