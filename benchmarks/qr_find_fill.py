"""Filling Orthanc and usarchive with the same synthetic studies for :mod:`benchmarks.bench_qr_find`.

The files are small Part 10 files (no pixel data) with the shape of
:func:`benchmarks.bench_find.populate`'s rows and the same seeded study dates:
study ``s`` is ``1.2.3.{s}`` of patient ``PAT{s // 2:07d}``, 2 series of 10
instances. They are encoded directly (pydicom takes minutes for 100,000).

Orthanc is filled through its real ingest, ``POST /instances``, from
:data:`FILL_THREADS` keep-alive HTTP connections taking whole studies in order
until every study is in or the time budget is spent, so what Orthanc holds is
always the first ``n`` studies and usarchive can be bulk-filled with exactly
those. :data:`ORTHANC_CONFIG` is what makes that ingest and its C-FIND fast
and comparable.
"""

from __future__ import annotations

import http.client
import random
import struct
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

from archive.archive import Archive
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from benchmarks.bench_find import DAYS, FIRST_DAY

PER_SERIES, SERIES_PER_STUDY = 10, 2
PER_STUDY = PER_SERIES * SERIES_PER_STUDY
#: Parallel ``POST /instances`` connections (2 cores: Orthanc's parsing and SQLite writes are the work).
FILL_THREADS = 4
#: Orthanc options for a fast fill and a C-FIND comparable with ours, merged over the harness's
#: (``tests/support/orthanc.py``: ``StorageCompression`` false, ``SaveJobs`` false,
#: ``OverwriteInstances`` false, the SQLite index in the benchmark's temporary directory).
ORTHANC_CONFIG: dict[str, object] = {
    "StoreMD5ForAttachments": False,  # no MD5 of each stored file
    "KeepAlive": True,  # HTTP keep-alive: one connection per fill thread
    "TcpNoDelay": True,  # on its HTTP server
    "HttpThreadsCount": FILL_THREADS,
    "HttpCompressionEnabled": False,
    "MetricsEnabled": False,
    "DicomThreadsCount": 4,
    "LimitFindResults": 0,  # no result limit (ours: 10,000, never reached here)
    "LimitFindInstances": 0,
    "StorageAccessOnFind": "Never",  # answer C-FIND from the index only, as usarchive does
}
_SOP_CLASS = b"1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
_IMPLEMENTATION = b"1.2.826.0.1.3680043.8.498.1"


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element with a 2-byte length (UI padded with NUL, text with space)."""
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH", group, element) + vr + struct.pack("<H", len(value)) + value


def small_file(study: int, series: int, number: int, study_date: str) -> bytes:
    """Instance ``number`` of series ``series`` of study ``study`` as a Part 10 file."""
    sop_uid = f"1.2.5.{study}.{series}.{number}".encode()
    meta = (
        struct.pack("<HH", 2, 0x0001) + b"OB\0\0" + struct.pack("<I", 2) + b"\0\1"
        + _element(2, 0x0002, b"UI", _SOP_CLASS)
        + _element(2, 0x0003, b"UI", sop_uid)
        + _element(2, 0x0010, b"UI", ExplicitVRLittleEndian.encode())
        + _element(2, 0x0012, b"UI", _IMPLEMENTATION)
    )  # fmt: skip
    body = (
        _element(8, 0x0016, b"UI", _SOP_CLASS)
        + _element(8, 0x0018, b"UI", sop_uid)
        + _element(8, 0x0020, b"DA", study_date.encode())
        + _element(8, 0x0030, b"TM", b"120000")
        + _element(8, 0x0060, b"CS", b"US")
        + _element(0x10, 0x0010, b"PN", f"Name^{study // 2}".encode())
        + _element(0x10, 0x0020, b"LO", f"PAT{study // 2:07d}".encode())
        + _element(0x20, 0x000D, b"UI", f"1.2.3.{study}".encode())
        + _element(0x20, 0x000E, b"UI", f"1.2.4.{study}.{series}".encode())
        + _element(0x20, 0x0011, b"IS", str(series + 1).encode())
        + _element(0x20, 0x0013, b"IS", str(number + 1).encode())
    )
    group_length = struct.pack("<HH", 2, 0x0000) + b"UL" + struct.pack("<HI", 4, len(meta))
    return b"\0" * 128 + b"DICM" + group_length + meta + body


def small_studies(instances: int, seed: int) -> Iterator[list[bytes]]:
    """The files of each study in turn (``instances // 20`` studies), dates as ``populate`` draws them."""
    rng = random.Random(seed)
    for study in range(instances // PER_STUDY):
        study_date = (FIRST_DAY + timedelta(days=rng.randrange(DAYS))).strftime("%Y%m%d")
        yield [
            small_file(study, series, number, study_date)
            for series in range(SERIES_PER_STUDY)
            for number in range(PER_SERIES)
        ]


def fill_orthanc(port: int, studies: list[list[bytes]], budget_s: float) -> int:
    """``POST /instances`` every file of the first studies until all are in or ``budget_s`` is spent.

    Returns
    -------
    int
        How many studies (the first ones, every instance of each) Orthanc holds.
    """
    deadline = time.monotonic() + budget_s
    lock = threading.Lock()
    taken = [0]
    errors: list[str] = []

    def post_studies() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while not errors:
                with lock:
                    if taken[0] == len(studies) or time.monotonic() > deadline:
                        return
                    study = studies[taken[0]]
                    taken[0] += 1
                for data in study:
                    connection.request("POST", "/instances", data, {"Content-Type": "application/dicom"})
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        errors.append(f"POST /instances: HTTP {response.status}")
                        return
        finally:
            connection.close()

    threads = [threading.Thread(target=post_studies) for _ in range(FILL_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return taken[0]


def ingest_rate(studies: list[list[bytes]], directory: Path, count: int) -> float:
    """Instances per second of usarchive's real ingest (``Archive.ingest_many``) of ``count`` files."""
    files = directory / "files"
    files.mkdir(parents=True)
    paths = []
    for n, data in enumerate(data for study in studies for data in study):
        if n == count:
            break
        path = files / f"{n}.dcm"
        path.write_bytes(data)
        paths.append(path)
    with Archive.open(ArchiveSettings(directory / "archive")) as archive:
        start = time.perf_counter()
        for chunk in range(0, len(paths), 500):
            part = paths[chunk : chunk + 500]
            archive.ingest_many(part, origins=[Origin("file")] * len(part))
        return len(paths) / (time.perf_counter() - start)
