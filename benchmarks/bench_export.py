"""Benchmark: research HDF5 export throughput and memory (issue 7 §1).

Targets: the writer (:class:`archive.research.export.hdf5.HDF5DatasetWriter`) writes at
least 0.7 times as fast as plain h5py writing the same arrays (frames, spread
masks, danger bit masks) with the same chunking (one chunk per frame) and the
same compression; its peak memory is flat in the number of clips.

Clips are synthetic: 480 x 640 grey frames of speckle inside an ultrasound fan
(dark outside, as after pixel cleaning), with an annotation holding needle and
target keyframes, spread masks on a third of the frames and two overlapping
danger classes on another third. Frames come from a pool decoded once, so the
time measured is the writing, not the making of frames.

Run::

    .venv/bin/python benchmarks/bench_export.py

Writes ``benchmarks/results/export.json`` and ``export.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from archive.model import ClipEvent, NeedleView, Technique
from archive.research.export.card import CardInfo
from archive.research.export.hdf5 import GZIP_LEVEL, HDF5DatasetWriter
from archive.research.export.records import ClipRecord
from archive.review import ClipAnnotation, NeedleMark, TargetMark

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ROWS, COLS = 480, 640
POOL = 16
RATIO_TARGET = 0.7
#: Peak RSS may grow this much from N to 4N clips and still count as flat.
FLAT_RSS_TOLERANCE_MB = 30.0
CARD = CardInfo(title="export benchmark", description="synthetic clips")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def frame_pool(seed: int) -> NDArray[np.uint8]:
    """POOL frames of speckle inside a fan, shape (POOL, ROWS, COLS) uint8."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:ROWS, 0:COLS]
    radius = np.hypot(rr + 80.0, cc - COLS / 2)
    angle = np.degrees(np.arctan2(cc - COLS / 2, rr + 80.0))
    fan = (np.abs(angle) < 35) & (radius > 100) & (radius < ROWS + 60)
    depth_gain = np.clip(1.3 - rr / ROWS, 0.3, 1.3)
    speckle = rng.rayleigh(38.0, size=(POOL, ROWS, COLS)) * depth_gain
    bone = (np.abs(rr - 300 - 20 * np.sin(cc / 60.0)) < 6) * 120.0
    return np.where(fan, np.clip(speckle + bone, 0, 255), 0).astype(np.uint8)


def masks() -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Read-only spread and two overlapping danger masks, shared by every frame that has one."""
    rr, cc = np.mgrid[0:ROWS, 0:COLS]
    spread = np.hypot(rr - 260, cc - 330) < 40
    canal = (rr > 330) & (rr < 420) & (np.abs(cc - 320) < 30)
    root = np.hypot(rr - 340, cc - 290) < 25
    for m in (spread, canal, root):
        m.setflags(write=False)
    return spread, canal, root


def annotation(key: str, n_frames: int) -> ClipAnnotation:
    spread, canal, root = masks()
    needle = {
        f: NeedleMark(((40.0, 100.0), (40.0 + 2 * f, 100.0 + 2.5 * f)), NeedleView.IN_PLANE)
        for f in range(1, n_frames, 10)
    }
    target = {f: TargetMark((300.0, 330.0), "L5 SAP-TP junction") for f in range(0, n_frames, 20)}
    third = n_frames // 3
    return ClipAnnotation(
        sop_instance_uid=key,
        reviewer="bench",
        n_frames=n_frames,
        frame_shape=(ROWS, COLS),
        needle=needle,
        target=target,
        spread={f: spread for f in range(third, 2 * third)},
        danger={f: {"spinal canal": canal, "nerve root": root} for f in range(2 * third, n_frames)},
        events={ClipEvent.NEEDLE_VISIBLE: 1, ClipEvent.INJECTION_START: third},
    )


def records(n_clips: int, n_frames: int, pool: NDArray[np.uint8]) -> Iterator[ClipRecord]:
    """Clips made one at a time, so only the clip being written is in memory."""

    def frames() -> Iterator[NDArray[np.uint8]]:
        for t in range(n_frames):
            yield pool[t % POOL]

    for i in range(n_clips):
        key = f"2.25.{i + 1}"
        yield ClipRecord(
            clip_key=key,
            patient_pseudonym=f"PAT-{i // 2:04d}",
            frames=frames,
            n_frames=n_frames,
            frame_shape=(ROWS, COLS),
            frame_times_ms=tuple(33.3 * t for t in range(n_frames)),
            pixel_size_mm=(0.2, 0.2),
            technique=Technique.OT,
            annotation=annotation(key, n_frames),
        )


def filter_kwargs(compression: str) -> dict[str, Any]:
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL}
    return {"compression": compression}


def write_plain(path: Path, n_clips: int, n_frames: int, pool: NDArray[np.uint8], compression: str) -> float:
    """The same arrays with plain h5py: frames, spread masks and danger bit masks, one frame at a time."""
    kwargs = filter_kwargs(compression)
    with h5py.File(path, "w") as h5:
        for record in records(n_clips, n_frames, pool):
            ann = record.annotation
            assert ann is not None
            group = h5.create_group(record.clip_key)
            shape = (n_frames, ROWS, COLS)
            frames = group.create_dataset("frames", shape, np.uint8, chunks=(1, ROWS, COLS), **kwargs)
            for t, frame in enumerate(record.frames()):
                frames[t] = frame
            spread = group.create_dataset("spread", shape, np.uint8, chunks=(1, ROWS, COLS), **kwargs)
            for t, mask in ann.spread.items():
                spread[t] = mask.view(np.uint8)
            danger = group.create_dataset("danger", shape, np.uint8, chunks=(1, ROWS, COLS), **kwargs)
            for t, by_class in ann.danger.items():
                bits = np.zeros((ROWS, COLS), np.uint8)
                for k, name in enumerate(sorted(by_class)):
                    bits |= by_class[name].view(np.uint8) << np.uint8(k)
                danger[t] = bits
    return 0.0


def write_export(path: Path, n_clips: int, n_frames: int, pool: NDArray[np.uint8], compression: str) -> float:
    """Write with the usarchive writer; returns the seconds spent in close() (card, fsync, rename)."""
    with HDF5DatasetWriter(path, seed=1, card_info=CARD, compression=compression) as writer:  # type: ignore[arg-type]
        for record in records(n_clips, n_frames, pool):
            writer.add_clip(record)
        start = time.perf_counter()
        writer.close()
        return time.perf_counter() - start


def timed(kind: str, n_clips: int, n_frames: int, compression: str, workdir: Path) -> dict[str, float]:
    pool = frame_pool(0)
    path = workdir / f"{kind}.h5"
    start, cpu_start = time.perf_counter(), time.process_time()
    close_s = (write_export if kind == "export" else write_plain)(path, n_clips, n_frames, pool, compression)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    size = path.stat().st_size
    path.unlink()
    for extra in workdir.glob(f"{kind}*"):
        extra.unlink()
    frame_mb = n_clips * n_frames * ROWS * COLS / 1e6
    return {
        "seconds": seconds,
        "close_seconds": close_s,
        "frame_mb": frame_mb,
        "mb_per_s": frame_mb / seconds,
        "cpu_seconds": cpu_seconds,
        "mb_per_cpu_s": frame_mb / cpu_seconds,
        "file_mb": size / 1e6,
    }


def child(args: argparse.Namespace) -> None:
    """One measured run in a fresh process; prints JSON with the time and peak RSS."""
    result = timed(args.kind, args.clips, args.frames, args.compression, Path(args.workdir))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_child(kind: str, clips: int, frames: int, compression: str, workdir: Path) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--clips",
        str(clips),
        "--frames",
        str(frames),
        "--compression",
        compression,
        "--workdir",
        str(workdir),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10, help="clips of the throughput runs")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip")
    parser.add_argument("--memory-clips", type=int, default=4, help="N of the memory runs (N and 4N)")
    parser.add_argument("--memory-frames", type=int, default=30, help="frames per clip of the memory runs")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs of each kind (best kept)")
    parser.add_argument("--compression", choices=("gzip", "lzf"), default="gzip")
    parser.add_argument("--child", choices=("export", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.kind = args.child
        child(args)
        return

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        workdir = Path(tmp)
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "export": []}
        for _ in range(args.repeats):  # alternate, so load changes hit both kinds alike
            for kind in ("plain", "export"):
                runs[kind].append(run_child(kind, args.clips, args.frames, args.compression, workdir))
        best = {kind: min(r, key=lambda x: x["seconds"]) for kind, r in runs.items()}
        best_cpu = {kind: min(r, key=lambda x: x["cpu_seconds"]) for kind, r in runs.items()}
        ratio = best["export"]["mb_per_s"] / best["plain"]["mb_per_s"]
        cpu_ratio = best_cpu["export"]["mb_per_cpu_s"] / best_cpu["plain"]["mb_per_cpu_s"]
        n = args.memory_clips
        memory = {
            clips: run_child("export", clips, args.memory_frames, args.compression, workdir)["peak_rss_mb"]
            for clips in (n, 4 * n)
        }
    growth = memory[4 * n] - memory[n]
    command = " ".join(["python", "benchmarks/bench_export.py", *sys.argv[1:]])
    result: dict[str, Any] = {
        "command": command,
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "clips": args.clips,
        "frames_per_clip": args.frames,
        "frame_shape": [ROWS, COLS],
        "compression": args.compression if args.compression == "lzf" else f"gzip level {GZIP_LEVEL}",
        "runs": runs,
        "plain_mb_per_s": best["plain"]["mb_per_s"],
        "export_mb_per_s": best["export"]["mb_per_s"],
        "export_close_seconds": best["export"]["close_seconds"],
        "file_mb": best["export"]["file_mb"],
        "frame_mb": best["export"]["frame_mb"],
        "ratio": ratio,
        "plain_mb_per_cpu_s": best_cpu["plain"]["mb_per_cpu_s"],
        "export_mb_per_cpu_s": best_cpu["export"]["mb_per_cpu_s"],
        "cpu_ratio": cpu_ratio,
        "load_average": list(os.getloadavg()),
        "ratio_target": RATIO_TARGET,
        "ratio_met": ratio >= RATIO_TARGET,
        "memory_frames_per_clip": args.memory_frames,
        "peak_rss_mb": {str(k): v for k, v in memory.items()},
        "peak_rss_growth_mb": growth,
        "memory_flat": growth <= FLAT_RSS_TOLERANCE_MB,
        "flat_tolerance_mb": FLAT_RSS_TOLERANCE_MB,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "export.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    rss = r["peak_rss_mb"]
    n, n4 = list(rss)
    return (
        "# Research HDF5 export benchmark\n\n"
        f"- command: `{r['command']}`\n- date (UTC): {r['date_utc']}\n"
        f"- machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}, h5py {r['h5py']}, "
        f"HDF5 {r['hdf5']}\n"
        f"- data: {r['clips']} clips x {r['frames_per_clip']} frames of {r['frame_shape'][0]} x "
        f"{r['frame_shape'][1]} uint8 (+ spread and danger masks on 2/3 of the frames), "
        f"{r['compression']}, chunks of one frame\n\n"
        f"- load average at the end (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in r['load_average'])}\n\n"
        "| | frames MB per wall s (best run) | frames MB per CPU s (best run) |\n|---|---|---|\n"
        f"| plain h5py, same arrays | {r['plain_mb_per_s']:.1f} | {r['plain_mb_per_cpu_s']:.1f} |\n"
        f"| usarchive writer | {r['export_mb_per_s']:.1f} | {r['export_mb_per_cpu_s']:.1f} |\n"
        f"| ratio writer / plain | **{r['ratio']:.2f}** | **{r['cpu_ratio']:.2f}** |\n\n"
        f"The writer's best run spent {r['export_close_seconds']:.2f} s in close() (card, flush, fsync, "
        f"rename), included above. File size {r['file_mb']:.1f} MB for {r['frame_mb']:.1f} MB of frames.\n\n"
        f"Target: wall-time ratio >= {r['ratio_target']}: {'met' if r['ratio_met'] else 'NOT met'}. "
        "On a shared machine wall time includes waiting for a CPU; CPU time (user + system of the "
        "writing process) is the steadier figure.\n\n"
        f"Peak RSS of the writer process (clips of {r['memory_frames_per_clip']} frames): {rss[n]:.1f} MB "
        f"for {n} clips, {rss[n4]:.1f} MB for {n4} clips; growth {r['peak_rss_growth_mb']:.1f} MB "
        f"({'flat' if r['memory_flat'] else 'NOT flat'}, tolerance {r['flat_tolerance_mb']} MB)\n"
    )


if __name__ == "__main__":
    main()
