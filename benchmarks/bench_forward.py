"""Benchmark forwarding: forwarder vs dcmtk dcmsend to one Orthanc, a 10,000-task backlog, receive cost.

Usage::

    python -m benchmarks.bench_forward [--clips 10] [--frames 100] [--single 300] [--backlog 10000]
                                       [--rounds 2] [--out benchmarks/results]

In one run:

1. **Throughput to Orthanc.** The same files (``--clips`` uncompressed clips of
   ``--frames`` frames of 640×480, and ``--single`` single-frame 640×480 images
   in studies of 30) are sent to a fresh Orthanc (Debian package, its own
   config, ``tests/support/orthanc.py``) (a) directly by dcmtk ``dcmsend`` (one
   association) and (b) by the forwarder (``pacs_bridge.forward.Forwarder``)
   from an archive that holds them, with one task each (instance granularity,
   ``batch_size`` 100: one association per 100 instances). Timed from the start
   of the send to the last task completed (b) or dcmsend's exit (a); rounds
   alternate the order; medians. Target: forwarder / dcmsend ≥ 0.9× for clips,
   ≥ 0.7× for single frames.
2. **Backlog.** ``--backlog`` tiny instances queued for a destination that
   answers Success and stores nothing (``benchmarks.pynetdicom_floor``): the
   forwarder drains them while the Python heap (tracemalloc) and the process's
   resident memory (VmRSS) are sampled. Target: flat memory (growth from 10 %
   to 100 % drained under 16 MiB RSS and 4 MiB heap).
3. **Receive with forwarding on vs off.** ``usarchive serve`` receives the
   single frames (storescu, one association) with no route (off), and with a
   route and its forwarder sending everything to a pynetdicom floor at the same
   time (on). Target: on / off ≥ 0.9×.

Results go to ``forward.json`` and ``forward.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from archive.archive import Archive
from archive.forward.config import Destination, ForwardSettings, Route
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from benchmarks.bench_receive import ENV, ROOT, SINGLES_PER_STUDY, USARCHIVE, PynetdicomFloor, _write
from pacs_bridge.forward import Forwarder

sys.path.insert(0, str(ROOT / "tests"))
from support.orthanc import OrthancServer

TARGETS = {"clips": 0.9, "singles": 0.7, "receive": 0.9}
RSS_GROWTH_MIB, HEAP_GROWTH_MIB = 16.0, 4.0


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 900.0, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def _rss_mib() -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def _cpu() -> tuple[str, str]:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", text)
    flags = re.search(r"flags\s*:\s*(.+)", text)
    return (model.group(1).strip() if model else platform.processor()), (
        flags.group(1).strip() if flags else ""
    )


def _forward_settings(host: str, port: int, aet: str) -> ForwardSettings:
    destination = Destination(name="PACS", ae_title=aet, host=host, port=port, batch_size=100, timeout_s=60.0)
    return ForwardSettings(
        enabled=True,
        lease_s=600.0,
        poll_s=0.05,
        destinations={"PACS": destination},
        routes=(Route(destination="PACS", granularity="instance"),),
    )


def _pending(archive: Archive) -> int:
    return sum(s.pending + s.in_progress for s in archive.forward.summary())


def _dcmsend_seconds(pacs: OrthancServer, files: list[Path]) -> float:
    command = [
        "dcmsend",
        "-aet",
        "BENCH",
        "-aec",
        pacs.aet,
        pacs.host,
        str(pacs.dicom_port),
        *map(str, files),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"dcmsend failed:\n{done.stdout}{done.stderr}")
    return elapsed


def _forward_seconds(pacs: OrthancServer, files: list[Path], work: Path) -> float:
    settings = ArchiveSettings(
        data_dir=work / "archive", forward=_forward_settings(pacs.host, pacs.dicom_port, pacs.aet)
    )
    with Archive.open(settings) as archive:
        archive.ingest_many(files, origins=[Origin("file", path=str(p)) for p in files])
        assert _pending(archive) == len(files), "every file must have one task"
        forwarder = Forwarder(archive, settings.forward, "bench")
        start = time.perf_counter()
        forwarder.start()
        try:
            _wait(lambda: _pending(archive) == 0, "the forwarder to drain")
        finally:
            elapsed = time.perf_counter() - start
            forwarder.stop()
        failed = [s.failed for s in archive.forward.summary()]
    if any(failed):
        raise RuntimeError(f"forwarding failed for {failed} tasks")
    shutil.rmtree(work / "archive", ignore_errors=True)
    return elapsed


def _throughput(files: list[Path], work: Path, rounds: int) -> dict[str, Any]:
    """dcmsend and forwarder seconds per round, each into a fresh Orthanc."""
    times: dict[str, list[float]] = {"dcmsend": [], "forwarder": []}
    for index in range(rounds):
        order = ["dcmsend", "forwarder"] if index % 2 == 0 else ["forwarder", "dcmsend"]
        for name in order:
            directory = work / f"orthanc-{name}-{index}"
            with OrthancServer(directory, config={"DicomCheckCalledAet": False}) as pacs:
                seconds = (
                    _dcmsend_seconds(pacs, files)
                    if name == "dcmsend"
                    else _forward_seconds(pacs, files, work)
                )
                count = pacs.client.statistics()["CountInstances"]
            shutil.rmtree(directory, ignore_errors=True)
            if count != len(files):
                raise RuntimeError(f"{name}: Orthanc holds {count} of {len(files)} instances")
            times[name].append(seconds)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "files": len(files),
        "megabytes": megabytes,
        "seconds": times,
        "median_s": median,
        "ratio": median["dcmsend"] / median["forwarder"],
    }


def _backlog(count: int, work: Path) -> dict[str, Any]:
    """Drain ``count`` tasks to a pynetdicom floor; sample heap and RSS."""
    tiny = work / "tiny"
    tiny.mkdir()
    rng = np.random.default_rng(11)
    import benchmarks.bench_receive as receive

    rows, columns = receive.ROWS, receive.COLUMNS
    receive.ROWS, receive.COLUMNS = 16, 16
    try:
        files = []
        for i in range(count):
            path = tiny / f"t{i:05d}.dcm"
            _write(path, 1, rng)
            files.append(path)
    finally:
        receive.ROWS, receive.COLUMNS = rows, columns
    floor = PynetdicomFloor(work / "floor", "memory")
    samples: list[dict[str, float]] = []
    with floor.running():
        settings = ArchiveSettings(
            data_dir=work / "backlog", forward=_forward_settings("127.0.0.1", floor.port, floor.aec)
        )
        with Archive.open(settings) as archive:
            for start in range(0, count, 500):
                chunk = files[start : start + 500]
                archive.ingest_many(chunk, origins=[Origin("file", path=str(p)) for p in chunk])
            if _pending(archive) != count:
                raise RuntimeError(f"backlog: {_pending(archive)} tasks queued, expected {count}")
            tracemalloc.start()
            forwarder = Forwarder(archive, settings.forward, "bench-backlog")
            started = time.perf_counter()
            forwarder.start()
            try:
                while True:
                    pending = _pending(archive)
                    heap, _ = tracemalloc.get_traced_memory()
                    samples.append(
                        {
                            "t_s": time.perf_counter() - started,
                            "drained": count - pending,
                            "heap_mib": heap / 2**20,
                            "rss_mib": _rss_mib(),
                        }
                    )
                    if pending == 0:
                        break
                    time.sleep(0.5)  # a sampling interval, not a wait for readiness
            finally:
                forwarder.stop()
                tracemalloc.stop()
            elapsed = time.perf_counter() - started
    early = next(s for s in samples if s["drained"] >= count * 0.1)
    last = samples[-1]
    return {
        "tasks": count,
        "seconds": elapsed,
        "tasks_per_s": count / elapsed,
        "samples": samples,
        "rss_growth_mib": last["rss_mib"] - early["rss_mib"],
        "heap_growth_mib": last["heap_mib"] - early["heap_mib"],
        "heap_peak_mib": max(s["heap_mib"] for s in samples),
    }


def _serve_config(path: Path, floor: PynetdicomFloor | None) -> Path:
    lines = ["[server]", 'allow = ["BENCH"]', ""]
    if floor is not None:
        lines += [
            "[destinations.FLOOR]",
            f'ae_title = "{floor.aec}"',
            'host = "127.0.0.1"',
            f"port = {floor.port}",
            "batch_size = 100",
            "",
            "[forward]",
            "enabled = true",
            "poll_s = 0.05",
            "",
            "[[forward.routes]]",
            'destination = "FLOOR"',
            'granularity = "instance"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _receive_seconds(files: list[Path], work: Path, floor: PynetdicomFloor | None) -> tuple[float, float]:
    """Seconds for storescu to send ``files`` to a fresh serve; and until its forwarder drained them."""
    data_dir = work / "serve-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    config = _serve_config(work / "serve.toml", floor)
    base = [USARCHIVE, "--config", str(config), "--data-dir", str(data_dir)]
    subprocess.run([*base, "init"], check=True, capture_output=True, env=ENV)
    process = subprocess.Popen(
        [*base, "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"listening on [^:]+:(\d+)", process.stdout.readline())
        if match is None:
            raise RuntimeError("usarchive serve did not start")
        command = ["storescu", "-aet", "BENCH", "-aec", "USARCHIVE", "127.0.0.1", match.group(1)]
        start = time.perf_counter()
        done = subprocess.run([*command, *map(str, files)], capture_output=True, text=True, env=ENV)
        received = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"storescu failed:\n{done.stdout}{done.stderr}")
        drained = received
        if floor is not None:
            settings = ArchiveSettings(data_dir=data_dir)
            with Archive.open(settings, create=False) as archive:
                _wait(lambda: archive.forward.summary()[0].completed == len(files), "forwarding", poll_s=0.1)
            drained = time.perf_counter() - start
        return received, drained
    finally:
        process.terminate()
        process.wait(timeout=120)
        shutil.rmtree(data_dir, ignore_errors=True)


def _receive(files: list[Path], work: Path, rounds: int) -> dict[str, Any]:
    off: list[float] = []
    on: list[float] = []
    drained: list[float] = []
    floor = PynetdicomFloor(work / "floor-receive", "memory")
    with floor.running():
        for index in range(rounds):
            for mode in ("off", "on") if index % 2 == 0 else ("on", "off"):
                received, done = _receive_seconds(files, work, floor if mode == "on" else None)
                (on if mode == "on" else off).append(received)
                if mode == "on":
                    drained.append(done)
    return {
        "files": len(files),
        "off_s": off,
        "on_s": on,
        "on_drained_s": drained,
        "ratio": statistics.median(off) / statistics.median(on),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the files and measure everything; return the figures."""
    work = Path(tempfile.mkdtemp(prefix="bench-forward-", dir=args.work))
    try:
        rng = np.random.default_rng(7)
        clips_dir, singles_dir = work / "clips", work / "singles"
        clips_dir.mkdir()
        singles_dir.mkdir()
        clips = []
        for i in range(args.clips):
            _write(clips_dir / f"clip{i:02d}.dcm", args.frames, rng)
            clips.append(clips_dir / f"clip{i:02d}.dcm")
        singles = []
        from pydicom.uid import generate_uid

        series = (generate_uid(), generate_uid())
        for i in range(args.single):
            if i % SINGLES_PER_STUDY == 0:
                series = (generate_uid(), generate_uid())
            _write(singles_dir / f"single{i:03d}.dcm", 1, rng, series)
            singles.append(singles_dir / f"single{i:03d}.dcm")
        model, flags = _cpu()
        result: dict[str, Any] = {
            "command": "python -m benchmarks.bench_forward " + " ".join(sys.argv[1:]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
            "cpu_model": model,
            "cpu_flags": flags,
            "load_before": os.getloadavg(),
            "clips": _throughput(clips, work, args.rounds),
            "singles": _throughput(singles, work, args.rounds),
            "backlog": _backlog(args.backlog, work),
            "receive": _receive(singles, work, args.rounds),
            "load_after": os.getloadavg(),
        }
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def misses(result: dict[str, Any]) -> list[str]:
    """The targets a result misses."""
    missed = [name for name, target in TARGETS.items() if result[name]["ratio"] < target]
    backlog = result["backlog"]
    if backlog["rss_growth_mib"] > RSS_GROWTH_MIB or backlog["heap_growth_mib"] > HEAP_GROWTH_MIB:
        missed.append("backlog memory")
    return missed


def markdown(result: dict[str, Any]) -> str:
    """The result as the BENCHMARKS.md section."""
    clips, singles, backlog, receive = (result[k] for k in ("clips", "singles", "backlog", "receive"))
    missed = misses(result)

    def row(name: str, key: str, unit: Callable[[float], str]) -> str:
        figures = result[key]
        med = figures["median_s"]
        return (
            f"| {name} | {unit(med['dcmsend'])} | {unit(med['forwarder'])} | {figures['ratio']:.2f}× "
            f"(≥ {TARGETS[key]}×) |"
        )

    mb = clips["megabytes"]
    lines = [
        "# Forward: the forwarder vs dcmtk dcmsend to Orthanc, a 10,000-task backlog, receive cost",
        "",
        f"`{result['command']}` — {result['date']} — {result['machine']}, load before "
        f"{tuple(round(x, 2) for x in result['load_before'])}, after "
        f"{tuple(round(x, 2) for x in result['load_after'])}",
        "",
        f"CPU: {result['cpu_model']}; flags: `{result['cpu_flags']}`",
        "",
        "Orthanc 1.10 (Debian package), fresh storage per measurement. dcmsend: one association for all "
        "files. Forwarder: the files already in an archive, one task each (instance granularity, "
        "batch_size 100: one association per 100 instances), sent as stored; timed until the last task "
        "is completed in the index. Medians of the rounds, order alternating.",
        "",
        "| files | dcmsend | forwarder | forwarder / dcmsend (target) |",
        "|---|---|---|---|",
        row(
            f"{clips['files']} clips × {result.get('frames', 100)} frames 640×480 ({mb:.0f} MB)",
            "clips",
            lambda s: f"{mb / s:.1f} MB/s",
        ),
        row(
            f"{singles['files']} single frames 640×480",
            "singles",
            lambda s: f"{singles['files'] / s:.1f} inst/s",
        ),
        "",
        f"Backlog: {backlog['tasks']} tasks drained in {backlog['seconds']:.1f} s "
        f"({backlog['tasks_per_s']:.0f} tasks/s) to a pynetdicom SCP that stores nothing; from 10 % to "
        f"100 % drained the resident memory grew {backlog['rss_growth_mib']:+.1f} MiB (target ≤ "
        f"{RSS_GROWTH_MIB:.0f}) and the traced Python heap {backlog['heap_growth_mib']:+.2f} MiB (target ≤ "
        f"{HEAP_GROWTH_MIB:.0f}; peak {backlog['heap_peak_mib']:.1f} MiB).",
        "",
        f"Receive ({receive['files']} single frames, storescu, one association): forwarding off "
        f"{statistics.median(receive['off_s']):.2f} s, on {statistics.median(receive['on_s']):.2f} s (all "
        f"forwarded after {statistics.median(receive['on_drained_s']):.2f} s): on / off "
        f"{receive['ratio']:.2f}× (target ≥ {TARGETS['receive']}×). Off: no route (no outbox rows); on: a "
        "route and the forwarder of the same serve sending to a pynetdicom SCP while receiving.",
        "",
        ("All targets met." if not missed else f"**Missed: {', '.join(missed)}.**"),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run, write ``forward.json`` and ``forward.md``; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=None, help="Directory for temporary files.")
    args = parser.parse_args()
    result = run(args)
    result["frames"] = args.frames
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "forward.json").write_text(json.dumps(result, indent=2))
    (args.out / "forward.md").write_text(markdown(result))
    print(markdown(result))
    if misses(result):
        sys.exit(1)


if __name__ == "__main__":
    main()
