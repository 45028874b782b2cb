"""Helpers of the PACS bridge tests: small real DICOM clips, dcmtk peers, polling."""

from __future__ import annotations

import io
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from pacs_bridge.demo import group_by_proposal

US_MULTIFRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")
US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
REPO = Path(__file__).resolve().parents[2]
USARCHIVE = str(Path(sys.executable).with_name("usarchive"))

#: Transfer syntaxes the sample clips are written in.
CLIP_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    RLELossless,
    JPEG2000Lossless,
    JPEG2000,
)


def wait_for(predicate: Callable[[], object], timeout_s: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms until it is truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _frames(frames: int, rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, rows * cols, dtype=np.float64).reshape(rows, cols)
    clip = np.stack([base + rng.integers(0, 50, size=(rows, cols)) for _ in range(frames)])
    return clip.astype(np.uint8)


def make_dataset(
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
    frames: int = 4,
    rows: int = 32,
    cols: int = 40,
    description: str = "L5 medial branch block left OT",
    sop_instance_uid: str | None = None,
    sop_class_uid: str = US_MULTIFRAME,
    seed: int = 0,
) -> Dataset:
    """A small ultrasound multi-frame data set (MONOCHROME2, 8 bit) in ``transfer_syntax``."""
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "P001"
    ds.PatientName = "Test^Patient"
    ds.StudyDate = "20260101"
    ds.StudyTime = "101010"
    ds.Modality = "US"
    ds.SeriesDescription = description
    ds.BodyPartExamined = "LSPINE"
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    if sop_class_uid == US_MULTIFRAME:
        ds.NumberOfFrames = frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = 0x00181063
    pixels = _frames(frames if sop_class_uid == US_MULTIFRAME else 1, rows, cols, seed)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = pixels.tobytes()
    if transfer_syntax == JPEGBaseline8Bit:
        encoded = []
        for frame in pixels:
            buffer = io.BytesIO()
            Image.fromarray(frame, mode="L").save(buffer, format="JPEG", quality=90)
            encoded.append(buffer.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    elif transfer_syntax in (RLELossless, JPEG2000Lossless, JPEG2000):
        kwargs = {"j2k_cr": [5]} if transfer_syntax == JPEG2000 else {}
        ds.compress(transfer_syntax, pixels if len(pixels) > 1 else pixels[0], **kwargs)
    else:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    return ds


def write_clip(path: Path, **kwargs: object) -> Path:
    """Write :func:`make_dataset` (same keyword arguments) as a Part 10 file at ``path``."""
    ds = make_dataset(**kwargs)  # type: ignore[arg-type]
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its file meta (the data set as encoded)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", f"{path} is not a Part 10 file"
    tag_group, tag_element, vr = struct.unpack("<HH2s", data[132:138])
    assert (tag_group, tag_element, vr) == (0x0002, 0x0000, b"UL"), "file meta without group length"
    (group_length,) = struct.unpack("<I", data[140:144])
    return data[144 + group_length :]


def run(args: list[str], timeout_s: float = 60.0, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def echoscu(
    port: int, *, calling: str = "SCANNER", called: str = "USARCHIVE", extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """dcmtk ``echoscu`` against ``127.0.0.1:port``."""
    return run(["echoscu", "-aet", calling, "-aec", called, *(extra or []), "127.0.0.1", str(port)])


def storescu(
    port: int,
    files: list[Path],
    *,
    calling: str = "SCANNER",
    called: str = "USARCHIVE",
    extra: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """dcmtk ``storescu`` sending ``files`` as they are to ``127.0.0.1:port``.

    storescu proposes one family of transfer syntaxes per run, so files are sent in
    one run per transfer syntax with the matching ``-x`` option (and never transcoded).
    """
    groups = group_by_proposal(files)
    assert sum(map(len, groups.values())) == len(files), "some files are not DICOM"
    result: subprocess.CompletedProcess[str] | None = None
    for option, paths in groups.items():
        result = run(
            ["storescu", "-aet", calling, "-aec", called, option, *(extra or []), "127.0.0.1", str(port)]
            + [str(p) for p in paths],
            timeout_s=300.0,
        )
        if result.returncode != 0:
            return result
    assert result is not None, "no files to send"
    return result


def start_serve_process(
    data_dir: Path,
    args: list[str],
    *,
    db_url: str | None = None,
    log_path: Path | None = None,
    prefix: list[str] | None = None,
) -> tuple[subprocess.Popen[str], int]:
    """Start ``usarchive serve --port 0`` as a subprocess; return it and the port it printed.

    ``prefix`` runs it under another command (``["prlimit", "--nofile=256"]``).
    """
    env = dict(os.environ)
    env.pop("USARCHIVE_DB", None)
    command = [*(prefix or []), USARCHIVE, "--data-dir", str(data_dir)]
    if db_url:
        command += ["--db", db_url]
    subprocess.run([*command, "init"], check=True, env=env, capture_output=True, timeout=120)
    command += ["-v", "serve", "--host", "127.0.0.1", "--port", "0", *args]
    stderr = log_path.open("w") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on [^:]+:(\d+)", line)
    if match is None:
        process.kill()
        process.wait()
        log = log_path.read_text() if log_path else ""
        raise AssertionError(f"usarchive serve did not start: {line!r}\n{log}")
    return process, int(match.group(1))
