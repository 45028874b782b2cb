"""Helpers of the retrieve tests: studies of small clips, storescp destinations, a C-MOVE SCU."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bridge_helpers import make_dataset, port_open, wait_for
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

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


def storescp_tls(certificate: Path, key: Path, ca: Path) -> list[str]:
    """``storescp`` options to serve TLS with ``certificate`` and require a client certificate from ``ca``."""
    return ["+tls", str(key), str(certificate), "+cf", str(ca), "-rc"]


def received_instances(directory: Path) -> dict[str, Path]:
    """The files a destination wrote into ``directory``, by SOP Instance UID."""
    found = {}
    for path in directory.iterdir():
        if path.is_file():
            found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    return found


def study_identifier(uid: str) -> Dataset:
    """A STUDY level retrieve identifier for Study Instance UID ``uid``."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    return ds


def move(
    port: int,
    identifier: Dataset,
    destination: str,
    *,
    calling: str,
    model: Any = StudyRootQueryRetrieveInformationModelMove,
    ssl_context: ssl.SSLContext | None = None,
) -> list[tuple[int, Dataset, Dataset | None]]:
    """Every response to one C-MOVE from a pynetdicom SCU: (status, status data set, identifier).

    With ``ssl_context`` the association to ``127.0.0.1:port`` is TLS (host name ``127.0.0.1``).
    """
    ae = AE(ae_title=calling)
    ae.add_requested_context(model)
    tls_args = (ssl_context, "127.0.0.1") if ssl_context is not None else None
    assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE", tls_args=tls_args)
    assert assoc.is_established
    try:
        return [(int(s.Status), s, i) for s, i in assoc.send_c_move(identifier, destination, model)]
    finally:
        assoc.release()


def failed_uids(identifier: object) -> list[str]:
    """Failed SOP Instance UID List of a response identifier, as a list (one UID reads as a str)."""
    value = getattr(identifier, "FailedSOPInstanceUIDList", [])
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]
