"""Benchmark the DICOM receiver against dcmtk storescp, Orthanc, pynetdicom and the durable ceiling.

Usage::

    python -m benchmarks.bench_receive [--clips 10] [--frames 100] [--single 300] [--big-gb 1.0]
                                       [--rounds 3] [--out benchmarks/results] [--no-orthanc]

The same files are sent by dcmtk ``storescu`` (``TCP_NODELAY=1`` in every
receiver's and sender's environment) to

(a) ``usarchive serve`` (SQLite index, fresh data directory each round),
(b) dcmtk ``storescp`` writing plain files (not durable: a reference),
(c) Orthanc (Debian package, default SQLite index, its own config in a temp dir),
(d) pynetdicom's floor: pynetdicom as shipped answering Success and storing nothing,

in one run, alternating receivers within each round; and (e) the durable
ceiling: the same bytes written locally with write + fsync + rename + fsync of
the directory, no network; and the rate at which one core SHA-256es the same
bytes held in memory (what an archive that records the hash must at least
do). Figures are medians over
``--rounds``:

* ``--clips`` uncompressed clips of ``--frames`` frames of 640×480 (≈ 30 MB) → MB/s;
* ``--single`` single-frame 640×480 images, in studies of 30 → instances/s;
* one clip of ``--big-gb`` GB → peak resident memory (VmHWM) of ``usarchive serve``.

Results go to ``receive.json`` and ``receive.md`` under ``--out``.
"""

from __future__ import annotations

import abc
import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
USARCHIVE = str(Path(sys.executable).with_name("usarchive"))
ENV = {**os.environ, "TCP_NODELAY": "1"}
ROWS, COLUMNS = 480, 640
DURABLE, SHA256 = "durable ceiling", "SHA-256 alone (one core, no I/O)"
FLOOR = "pynetdicom floor (faster mode)"
#: Single-frame images come as an examination does: studies of this many images, one series each.
SINGLES_PER_STUDY = 30


def _write(path: Path, frames: int, rng: np.random.Generator, series: tuple[str, str] | None = None) -> None:
    """An uncompressed 8-bit ultrasound image or clip with random (incompressible) pixels.

    ``series`` gives (study, series) UIDs; by default each file is its own study.
    """
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1" if frames > 1 else "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series or (generate_uid(), generate_uid())
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.Modality = "BENCH", "Bench^Mark", "20240101", "US"
    ds.SeriesDescription = "L4 L5 medial branch block right OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLUMNS, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer = frames, 33.3, 0x00181063
    ds.PixelData = rng.integers(0, 256, size=frames * ROWS * COLUMNS, dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _echo(port: int, aec: str) -> bool:
    done = subprocess.run(
        ["echoscu", "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port)], capture_output=True
    )
    return done.returncode == 0


def _peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


class Receiver(abc.ABC):
    """A receiver started per measurement: ``port``, ``aec``, ``pid``; stopped on exit."""

    name = ""
    aec = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = 0
        self.process: subprocess.Popen[Any] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        """Start with fresh storage, yield, stop and delete the storage."""
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.start()
        try:
            _wait(lambda: _echo(self.port, self.aec), f"{self.name} to answer C-ECHO")
            yield self
        finally:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            shutil.rmtree(self.work, ignore_errors=True)

    @abc.abstractmethod
    def start(self) -> None:
        """Start the process and set ``port``."""


class Usarchive(Receiver):
    """``usarchive serve``, SQLite index."""

    name, aec = "usarchive serve", "USARCHIVE"

    def start(self) -> None:
        """Start ``usarchive serve --port 0`` and read the port it prints."""
        command = [USARCHIVE, "--data-dir", str(self.work / "data"), "serve"]
        command += ["--host", "127.0.0.1", "--port", "0", "--allow", "BENCH"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"listening on [^:]+:(\d+)", line)
        if match is None:
            raise RuntimeError(f"usarchive serve did not start: {line!r}")
        self.port = int(match.group(1))


class Storescp(Receiver):
    """dcmtk ``storescp`` writing plain files (no fsync)."""

    name, aec = "dcmtk storescp", "STORESCP"

    def start(self) -> None:
        """Start storescp on a free port."""
        self.port = _free_port()
        command = ["storescp", "-aet", self.aec, "-od", str(self.work), "--fork", str(self.port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
        )


class PynetdicomFloor(Receiver):
    """pynetdicom as shipped, answering Success without storing (``benchmarks.pynetdicom_floor``)."""

    aec = "FLOOR"

    def __init__(self, work: Path, mode: str) -> None:
        super().__init__(work)
        self.mode = mode
        self.name = f"pynetdicom floor, {mode}"

    def start(self) -> None:
        """Start the floor SCP on a free port."""
        self.port = _free_port()
        command = [sys.executable, "-m", "benchmarks.pynetdicom_floor", self.aec, str(self.port), self.mode]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=ROOT
        )


class Orthanc(Receiver):
    """Orthanc with its default SQLite index, configured in the work directory."""

    name, aec = "Orthanc", "ORTHANC"

    def start(self) -> None:
        """Write a config JSON, start Orthanc, wait for its HTTP /system."""
        self.port = _free_port()
        http_port = _free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(self.work / "storage"),
            "IndexDirectory": str(self.work / "index"),
            "DicomAet": self.aec,
            "DicomPort": self.port,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "StorageCompression": False,
            "Plugins": [],
        }
        path = self.work / "orthanc.json"
        path.write_text(json.dumps(config))
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        self.process = subprocess.Popen(
            [binary, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
        )

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=1) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        _wait(up, "Orthanc HTTP /system")


def _send(receiver: Receiver, files: list[Path]) -> float:
    """Seconds for storescu to send ``files`` in one association."""
    command = ["storescu", "-aet", "BENCH", "-aec", receiver.aec, "127.0.0.1", str(receiver.port)]
    start = time.perf_counter()
    done = subprocess.run([*command, *map(str, files)], capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"storescu to {receiver.name} failed:\n{done.stdout}{done.stderr}")
    return elapsed


def _durable_ceiling(files: list[Path], target: Path) -> float:
    """Seconds to write the files' bytes with write + fsync + rename + directory fsync."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    directory = os.open(target, os.O_RDONLY)
    start = time.perf_counter()
    try:
        for path in files:
            temp = target / f".{path.name}.part"
            with path.open("rb") as src, temp.open("wb") as dst:
                while block := src.read(4 * 1024 * 1024):
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
            temp.replace(target / path.name)
            os.fsync(directory)
        return time.perf_counter() - start
    finally:
        os.close(directory)
        shutil.rmtree(target, ignore_errors=True)


def _sha256_seconds(files: list[Path]) -> float:
    """Seconds to SHA-256 the files' bytes, already in memory, on one core (no I/O)."""
    total = 0.0
    for path in files:
        data = path.read_bytes()
        start = time.perf_counter()
        hashlib.sha256(data).digest()
        total += time.perf_counter() - start
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the files, measure every receiver in alternating rounds, return the figures."""
    work = Path(tempfile.mkdtemp(prefix="bench-receive-", dir=args.work))
    rng = np.random.default_rng(7)
    clips_dir, singles_dir, big_dir = work / "clips", work / "singles", work / "big"
    for directory in (clips_dir, singles_dir, big_dir):
        directory.mkdir()
    clips = [clips_dir / f"clip{i:02d}.dcm" for i in range(args.clips)]
    singles = [singles_dir / f"img{i:03d}.dcm" for i in range(args.single)]
    for path in clips:
        _write(path, args.frames, rng)
    for index, path in enumerate(singles):
        if index % SINGLES_PER_STUDY == 0:
            series = (generate_uid(), generate_uid())
        _write(path, 1, rng, series)
    clips_mb = sum(p.stat().st_size for p in clips) / 1e6
    receivers: list[Receiver] = [
        Usarchive(work / "rx-usarchive"),
        Storescp(work / "rx-storescp"),
        PynetdicomFloor(work / "rx-floor-memory", "memory"),
        PynetdicomFloor(work / "rx-floor-file", "file"),
    ]
    if not args.no_orthanc:
        receivers.append(Orthanc(work / "rx-orthanc"))
    clip_mbs: dict[str, list[float]] = {r.name: [] for r in receivers}
    single_rate: dict[str, list[float]] = {r.name: [] for r in receivers}
    for reference in (DURABLE, SHA256):
        clip_mbs[reference], single_rate[reference] = [], []
    for round_number in range(args.rounds):
        order = receivers[round_number % len(receivers) :] + receivers[: round_number % len(receivers)]
        for receiver in order:
            with receiver.running():
                clip_mbs[receiver.name].append(clips_mb / _send(receiver, clips))
            with receiver.running():
                single_rate[receiver.name].append(len(singles) / _send(receiver, singles))
        clip_mbs[DURABLE].append(clips_mb / _durable_ceiling(clips, work / "ceiling"))
        single_rate[DURABLE].append(len(singles) / _durable_ceiling(singles, work / "ceiling"))
        clip_mbs[SHA256].append(clips_mb / _sha256_seconds(clips))
        single_rate[SHA256].append(len(singles) / _sha256_seconds(singles))
        print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    shutil.rmtree(clips_dir)
    shutil.rmtree(singles_dir)
    big = big_dir / "big.dcm"
    _write(big, max(2, round(args.big_gb * 1e9 / (ROWS * COLUMNS))), rng)
    usarchive = receivers[0]
    with usarchive.running():
        baseline_rss = _peak_rss_mb(usarchive.pid)
        big_seconds = _send(usarchive, [big])
        big_rss = _peak_rss_mb(usarchive.pid)
    big_mb = big.stat().st_size / 1e6
    shutil.rmtree(work, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}",
        "command": " ".join(["python -m benchmarks.bench_receive", *sys.argv[1:]]),
        "clips": {"count": len(clips), "frames": args.frames, "total_mb": round(clips_mb, 1)},
        "singles": {"count": len(singles)},
        "clip_mb_per_s": _with_floor({k: statistics.median(v) for k, v in clip_mbs.items()}),
        "single_per_s": _with_floor({k: statistics.median(v) for k, v in single_rate.items()}),
        "clip_mb_per_s_runs": clip_mbs,
        "single_per_s_runs": single_rate,
        "big": {
            "size_mb": round(big_mb, 1),
            "seconds": round(big_seconds, 2),
            "peak_rss_mb": round(big_rss, 1),
            "idle_rss_mb": round(baseline_rss, 1),
        },
    }


def _with_floor(figures: dict[str, float]) -> dict[str, float]:
    """Add ``FLOOR``: the faster of pynetdicom's two receive modes."""
    modes = [value for name, value in figures.items() if name.startswith("pynetdicom floor, ")]
    return {**figures, FLOOR: max(modes)} if modes else figures


def _ratio(figures: dict[str, float], a: str, b: str) -> str:
    return f"{figures[a] / figures[b]:.2f}×" if figures.get(b) else "n/a"


def markdown(result: dict[str, Any]) -> str:
    """The ``receive.md`` section."""
    clip, single = result["clip_mb_per_s"], result["single_per_s"]
    us = "usarchive serve"
    lines = [
        "# Receive: `usarchive serve` vs dcmtk storescp, Orthanc, pynetdicom and the durable ceiling",
        "",
        f"`{result['command']}` — {result['date']} — {result['machine']}",
        "",
        f"Sender: dcmtk `storescu`, one association per batch, `TCP_NODELAY=1`. "
        f"{result['clips']['count']} clips × {result['clips']['frames']} frames 640×480 "
        f"({result['clips']['total_mb']} MB), one study each; {result['singles']['count']} single-frame "
        f"640×480 images in studies of {SINGLES_PER_STUDY} (one series each). "
        "Medians of the rounds; receivers alternate within each round.",
        "",
        "| receiver | clips MB/s | single-frame instances/s |",
        "|---|---|---|",
    ]
    for name in (name for name in clip if name != FLOOR):
        lines.append(f"| {name} | {clip[name]:.1f} | {single[name]:.1f} |")
    lines += [
        "",
        "| ratio | clips (target) | single-frame (target) |",
        "|---|---|---|",
        f"| usarchive / durable ceiling | {_ratio(clip, us, DURABLE)} (≥ 0.85×) "
        f"| {_ratio(single, us, DURABLE)} (≥ 0.6×) |",
        f"| usarchive / Orthanc | {_ratio(clip, us, 'Orthanc')} (≥ 2×) "
        f"| {_ratio(single, us, 'Orthanc')} (≥ 1×) |",
        f"| usarchive / storescp (not durable) | {_ratio(clip, us, 'dcmtk storescp')} "
        f"| {_ratio(single, us, 'dcmtk storescp')} |",
        f"| usarchive / SHA-256 alone | {_ratio(clip, us, SHA256)} | {_ratio(single, us, SHA256)} |",
        f"| usarchive / pynetdicom floor (stores nothing) | {_ratio(clip, us, FLOOR)} "
        f"| {_ratio(single, us, FLOOR)} |",
        f"| targets / SHA-256 alone: 0.85× ceiling, 2× Orthanc "
        f"| {0.85 * clip[DURABLE] / clip[SHA256]:.2f}×, {2 * clip['Orthanc'] / clip[SHA256]:.2f}× "
        f"| {0.6 * single[DURABLE] / single[SHA256]:.2f}×, {single['Orthanc'] / single[SHA256]:.2f}× |"
        if "Orthanc" in clip
        else "",
        f"| targets / pynetdicom floor: 0.85× ceiling, 2× Orthanc "
        f"| {0.85 * clip[DURABLE] / clip[FLOOR]:.2f}×, "
        f"{2 * clip['Orthanc'] / clip[FLOOR]:.2f}× "
        f"| {0.6 * single[DURABLE] / single[FLOOR]:.2f}×, "
        f"{single['Orthanc'] / single[FLOOR]:.2f}× |"
        if "Orthanc" in clip
        else "",
        "",
        "*pynetdicom floor*: pynetdicom as shipped answering every C-STORE with Success and storing "
        "nothing (`benchmarks/pynetdicom_floor.py`), data sets received in memory (its default) or "
        "streamed to a temporary file (as usarchive does); the ratios use the faster of the two. No "
        "receiver built on pynetdicom beats it without replacing parts of pynetdicom (usarchive "
        "replaces its two per-association loops). "
        "*SHA-256 alone*: hashing the same bytes, held in memory, on one core; the index records "
        "each file's SHA-256 and a Success is sent only after the index has committed, so a single "
        "sender's stream cannot be received faster than one core hashes it. A target above 1× "
        "of the floor or of the hash rate cannot be met by a receiver built on pynetdicom that "
        "records a SHA-256.",
        "",
        f"One clip of {result['big']['size_mb']} MB: {result['big']['seconds']} s; peak resident memory of "
        f"`usarchive serve` {result['big']['peak_rss_mb']} MB (idle {result['big']['idle_rss_mb']} MB; "
        "target < 200 MB).",
        "",
        "Where a target is missed, what limits it (profile) is in docs/pacs_bridge.md, *Performance*.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run and write ``receive.json`` and ``receive.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--big-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "receive.json").write_text(json.dumps(result, indent=2))
    (args.out / "receive.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
