"""Helpers of the retrieve tests: studies of small clips, dcmtk and pynetdicom peers, ``serve`` configs."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge_helpers import make_dataset, port_open, run, wait_for
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

from archive.archive import Archive
from archive.ingest import Origin
from pacs_bridge.server import BridgeServer


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
    return by_uid(directory.iterdir())


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


def by_uid(paths: Iterable[Path]) -> dict[str, Path]:
    """The files among ``paths`` by their SOP Instance UID (directories skipped)."""
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths if p.is_file()}


def _study_keys(study_uid: str) -> list[str]:
    return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]


def movescu(
    port: int, study_uid: str, *, calling: str = "WS1", destination: str = "DEST", verbose: bool = True
) -> subprocess.CompletedProcess[str]:
    """dcmtk ``movescu`` (Study Root) moving study ``study_uid`` at ``127.0.0.1:port`` to ``destination``."""
    args = ["movescu", *(["-v"] if verbose else []), "-S", "-aet", calling, "-aec", "USARCHIVE"]
    return run([*args, "-aem", destination, *_study_keys(study_uid), "127.0.0.1", str(port)])


def getscu(
    port: int,
    study_uid: str,
    output: Path,
    *,
    calling: str = "WS1",
    verbose: bool = True,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """dcmtk ``getscu`` (Study Root) getting study ``study_uid`` bit-preserved into ``output``."""
    args = ["getscu", *(["-v"] if verbose else []), "-S", "-aet", calling, "-aec", "USARCHIVE"]
    args += ["-od", str(output), "+B", *extra]
    return run([*args, *_study_keys(study_uid), "127.0.0.1", str(port)])


def write_serve_config(
    path: Path, dest_port: int | None, *, rights: Sequence[str] = ("move",), move_to: str | None = None
) -> None:
    """A ``usarchive.toml``: SCANNER admitted, WS1 with ``rights`` (to ``move_to``), DEST at ``dest_port``.

    ``dest_port`` None leaves ``[destinations.DEST]`` out; ``move_to`` None, ``[server.move_destinations]``.
    """
    lines = ["[server]", 'allow = ["SCANNER"]', "[server.permissions]"]
    lines.append("WS1 = [" + ", ".join(f'"{right}"' for right in rights) + "]")
    if move_to is not None:
        lines += ["[server.move_destinations]", f'WS1 = ["{move_to}"]']
    if dest_port is not None:
        lines += [
            "[destinations.DEST]",
            'ae_title = "DEST"',
            'host = "127.0.0.1"',
            f"port = {dest_port}",
            "timeout_s = 10.0",
        ]
    path.write_text("\n".join([*lines, ""]))


@dataclass
class HeldDestination:
    """A pynetdicom storage SCP whose every C-STORE waits until :attr:`gate` is set (or 20 s).

    With :attr:`hold_release`, its answer to an A-RELEASE request waits the same way
    for :attr:`release_gate`; :attr:`released` is set once that wait is over.
    """

    aet: str
    port: int = 0
    stored: list[str] = field(default_factory=list)
    first_arrived: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    hold_release: bool = False
    release_gate: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def on_store(self, event: Any) -> int:
        self.stored.append(str(event.request.AffectedSOPInstanceUID))
        self.first_arrived.set()
        self.gate.wait(20)
        return 0x0000

    def on_acse(self, event: Any) -> None:
        # Triggered on the association's thread as it takes the primitive, before it answers.
        primitive = event.primitive
        if self.hold_release and isinstance(primitive, A_RELEASE) and primitive.result is None:
            self.release_gate.wait(20)
            self.released.set()


@contextmanager
def held_destination(aet: str) -> Iterator[HeldDestination]:
    """A :class:`HeldDestination` titled ``aet`` on a free loopback port; released and shut down on exit."""
    held = HeldDestination(aet)
    ae = AE(ae_title=aet)
    ae.supported_contexts = AllStoragePresentationContexts
    handlers = [(evt.EVT_C_STORE, held.on_store), (evt.EVT_ACSE_RECV, held.on_acse)]
    scp = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    assert scp is not None  # block=False returns the running server
    held.port = int(scp.server_address[1])
    try:
        yield held
    finally:
        held.gate.set()
        held.release_gate.set()
        ae.shutdown()


def move_cancelled_at_first(
    server: BridgeServer, identifier: Dataset, held: HeldDestination, *, calling: str = "WS1", msg_id: int = 7
) -> list[tuple[int, Dataset, Dataset | None]]:
    """A C-MOVE to ``held``, C-CANCEL once its first sub-operation arrives: every response received."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert assoc.is_established
    model = StudyRootQueryRetrieveInformationModelMove
    responses = assoc.send_c_move(identifier, held.aet, model, msg_id=msg_id)
    assert held.first_arrived.wait(20)
    assoc.send_c_cancel(msg_id, assoc.accepted_contexts[0].context_id)
    served = [a for a in server._ae.active_associations if a.is_acceptor]  # type: ignore[union-attr]
    wait_for(lambda: any(msg_id in a.dimse.cancel_req for a in served), what="the C-CANCEL to arrive")
    held.gate.set()
    statuses = [(int(s.Status), s, i) for s, i in responses]
    assoc.release()
    return statuses
