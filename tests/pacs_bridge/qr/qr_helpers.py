"""Helpers of the retrieve tests: studies of small clips, storescp destinations, a destination record."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bridge_helpers import make_dataset, port_open, wait_for
from pydicom.uid import generate_uid

from archive.archive import Archive
from archive.ingest import Origin


def free_port() -> int:
    """A TCP port nothing listens on now (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_study(
    directory: Path,
    syntaxes: Sequence[str],
    *,
    patient_id: str = "P001",
    study_uid: str | None = None,
    series_per_instance: bool = False,
    seed: int = 0,
) -> list[Path]:
    """One study of ``len(syntaxes)`` clips, clip ``i`` in ``syntaxes[i]``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    paths = []
    for index, syntax in enumerate(syntaxes):
        ds = make_dataset(transfer_syntax=syntax, seed=seed + index)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = generate_uid() if series_per_instance else series_uid
        ds.PatientID = patient_id
        ds.InstanceNumber = index + 1
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def ingest(archive: Archive, paths: Sequence[Path]) -> None:
    """Import ``paths`` into ``archive`` (as ``usarchive import`` does)."""
    for path in paths:
        result = archive.ingest(path, origin=Origin("file", path=str(path)))
        assert result.outcome.value in {"stored", "duplicate"}, result


@contextmanager
def storescp(output: Path, *, aet: str = "DEST", extra: Sequence[str] = ("+xa",)) -> Iterator[int]:
    """dcmtk ``storescp`` writing what it receives bit-preserved into ``output``; yields its port."""
    output.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        ["storescp", "-aet", aet, "-od", str(output), "+B", *extra, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: port_open("127.0.0.1", port) or process.poll() is not None, what="storescp")
        assert process.poll() is None, (
            f"storescp did not start: {process.stderr.read() if process.stderr else ''}"
        )
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def failed_uids(identifier: object) -> list[str]:
    """Failed SOP Instance UID List of a response identifier, as a list (one UID reads as a str)."""
    value = getattr(identifier, "FailedSOPInstanceUIDList", [])
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]
