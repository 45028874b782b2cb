"""A real Orthanc (the Debian package) for tests and benchmarks, on free loopback ports.

:class:`OrthancServer` writes its own JSON configuration into a directory of
its own (storage and index there, a free DICOM port and a free HTTP port,
``RemoteAccessAllowed`` and ``AuthenticationEnabled`` false), starts
``/usr/sbin/Orthanc`` on it and polls ``GET /system`` until it answers (no
sleeps: a deadline, and the process's exit is noticed at once). It can be
stopped and started again on the same storage and ports (an outage), and its
REST API is reached through :class:`OrthancClient` (urllib, no extra package).
Orthanc 1.10 has no bind-address option: it listens on every interface, but
only loopback clients may use its REST API (``RemoteAccessAllowed`` false) and
the tests only ever connect on 127.0.0.1.

The DICOMweb plugin (Debian ``orthanc-dicomweb``) is loaded with
``plugins=(DICOMWEB_PLUGIN,)``. Remote modalities (``DicomModalities``: who may
be sent to, who gets storage commitment reports) are given at construction or
added while running with :meth:`OrthancClient.put_modality`.

Examples
--------
>>> with OrthancServer(tmp_path / "orthanc", modalities={"US": ("USARCHIVE", "127.0.0.1", 11112)}) as pacs:
...     pacs.client.instances()                                   # doctest: +SKIP
[]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

ORTHANC_BINARY = "/usr/sbin/Orthanc"
#: The DICOMweb plugin of Debian's ``orthanc-dicomweb``.
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
#: Longest wait for Orthanc to answer ``/system`` after start.
START_TIMEOUT_S = 30.0
_POLL_S = 0.02


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OrthancError(RuntimeError):
    """Orthanc could not be started, or its REST API answered an error."""


class OrthancClient:
    """A small client of Orthanc's REST API.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8042``.
    timeout_s : float
        Timeout of each request.
    """

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> bytes:
        """Send one request; return the body. A non-2xx answer raises :class:`OrthancError`."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise OrthancError(f"Orthanc {method} {path}: HTTP {exc.code}: {detail}") from exc

    def get_json(self, path: str) -> Any:
        """``GET path`` decoded as JSON."""
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, payload: Any) -> Any:
        """``POST path`` with a JSON body (a plain string is posted as is); the answer decoded."""
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        answer = self.request("POST", path, body, "application/json")
        return json.loads(answer) if answer.strip() else None

    def system(self) -> dict[str, Any]:
        """``GET /system``: version, AE title, ports."""
        return dict(self.get_json("/system"))

    def instances(self) -> list[str]:
        """Orthanc identifiers of every stored instance."""
        return [str(item) for item in self.get_json("/instances")]

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file of one instance (``/instances/{id}/file``), as Orthanc keeps it."""
        return self.request("GET", f"/instances/{orthanc_id}/file")

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        """``/instances/{id}/simplified-tags``."""
        return dict(self.get_json(f"/instances/{orthanc_id}/simplified-tags"))

    def find_instance(self, sop_instance_uid: str) -> str | None:
        """The Orthanc identifier of the instance with this SOP Instance UID, or ``None``."""
        found = self.post_json("/tools/lookup", sop_instance_uid)
        for item in found or []:
            if item.get("Type") == "Instance":
                return str(item["ID"])
        return None

    def sop_instance_uids(self) -> list[str]:
        """SOP Instance UID of every stored instance (one request for all)."""
        answer = self.post_json(
            "/tools/find", {"Level": "Instance", "Query": {}, "Expand": True, "RequestedTags": []}
        )
        return [str(item["MainDicomTags"]["SOPInstanceUID"]) for item in answer]

    def statistics(self) -> dict[str, Any]:
        """``/statistics``: counts of patients, studies, series, instances."""
        return dict(self.get_json("/statistics"))

    def put_modality(self, name: str, aet: str, host: str, port: int, **options: Any) -> None:
        """Declare (or replace) a remote modality: a peer Orthanc may send to and report commitment to."""
        payload = {"AET": aet, "Host": host, "Port": port, **options}
        self.request("PUT", f"/modalities/{name}", json.dumps(payload).encode(), "application/json")

    def delete_all(self) -> None:
        """Remove every patient (and so every instance)."""
        for patient in self.get_json("/patients"):
            self.request("DELETE", f"/patients/{patient}")


def dataset_bytes(dicom_file: bytes) -> bytes:
    """The data set of a Part 10 file: the bytes after the preamble, ``DICM`` and the file meta group.

    Parameters
    ----------
    dicom_file : bytes
        A DICOM Part 10 file.

    Returns
    -------
    bytes
        Everything after the File Meta Information (group 0002), unchanged.
    """
    if dicom_file[128:132] != b"DICM":
        raise ValueError("dataset_bytes: expected a DICOM Part 10 file ('DICM' at byte 128), got other bytes")
    tag, vr = dicom_file[132:136], dicom_file[136:138]
    if tag != b"\x02\x00\x00\x00" or vr != b"UL":
        raise ValueError("dataset_bytes: expected (0002,0000) File Meta Information Group Length first")
    group_length = struct.unpack("<I", dicom_file[140:144])[0]
    return dicom_file[144 + group_length :]


class OrthancServer:
    """One Orthanc process with its configuration, storage and log in ``directory``.

    Parameters
    ----------
    directory : Path
        Created if missing: ``orthanc.json``, ``storage/``, ``orthanc.log``.
    aet : str
        Orthanc's AE title.
    modalities : mapping of name to (aet, host, port)
        ``DicomModalities``: peers Orthanc knows (and reports storage commitment to).
    plugins : sequence of str
        Plugin files to load (e.g. :data:`DICOMWEB_PLUGIN`).
    config : mapping
        More configuration keys, merged over the defaults (e.g.
        ``{"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2.1"]}``).
    verbose : bool
        Start Orthanc with ``--verbose`` (associations are logged).
    """

    def __init__(
        self,
        directory: Path,
        *,
        aet: str = "ORTHANC",
        modalities: Mapping[str, tuple[str, str, int]] | None = None,
        plugins: Sequence[str] = (),
        config: Mapping[str, Any] | None = None,
        verbose: bool = False,
    ) -> None:
        if not Path(ORTHANC_BINARY).exists():
            raise OrthancError(
                f"{ORTHANC_BINARY} not found; install Debian's 'orthanc' package "
                "(bash scripts/system-deps.sh does it)"
            )
        for plugin in plugins:
            if not Path(plugin).exists():
                raise OrthancError(f"Orthanc plugin {plugin} not found; install its Debian package")
        self.directory = Path(directory)
        self.aet = aet
        self.host = "127.0.0.1"
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.verbose = verbose
        self.log_path = self.directory / "orthanc.log"
        self.config_path = self.directory / "orthanc.json"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        storage = self.directory / "storage"
        settings: dict[str, Any] = {
            "Name": f"usarchive-test-{aet}",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomModalities": {
                name: {"AET": peer_aet, "Host": host, "Port": port}
                for name, (peer_aet, host, port) in (modalities or {}).items()
            },
            "DicomAssociationCloseDelay": 0,
            "DicomScuTimeout": 10,
            "SaveJobs": False,
            "OverwriteInstances": False,
            "Plugins": list(plugins),
            "DeidentifyLogs": False,
        }
        settings.update(config or {})
        self.settings = settings

    @property
    def url(self) -> str:
        """Base URL of the REST API."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def client(self) -> OrthancClient:
        """A REST client of this Orthanc."""
        return OrthancClient(self.url)

    @property
    def running(self) -> bool:
        """Whether the Orthanc process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of Orthanc's log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start Orthanc (again, on the same storage and ports) and wait until ``/system`` answers.

        Raises
        ------
        OrthancError
            If it exits or does not answer within ``timeout_s``; the message has its log's end.
        """
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.settings, indent=2))
        args = [ORTHANC_BINARY, f"--logfile={self.log_path}", "--no-jobs"]
        if self.verbose:
            args.append("--verbose")
        args.append(str(self.config_path))
        self._log = (self.directory / "orthanc.stdout").open("ab")  # closed in stop()
        self._process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.directory)
        deadline = time.monotonic() + timeout_s
        probe = OrthancClient(self.url, timeout_s=2.0)
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._close_log()
                raise OrthancError(f"Orthanc exited with {code} while starting; its log:\n{self.log_tail()}")
            try:
                probe.system()
                if self._dicom_port_open():
                    return
            except (OSError, OrthancError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise OrthancError(
                    f"Orthanc did not answer {self.url}/system within {timeout_s:.0f} s; its log:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(_POLL_S)  # polling with a deadline: Orthanc offers no readiness signal

    def _dicom_port_open(self) -> bool:
        address = (self.host, self.dicom_port)
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=1.0):
            return True
        return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL after ``timeout_s``); its storage stays."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> OrthancServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_orthanc(directory: Path, **options: Any) -> Iterator[OrthancServer]:
    """Start an :class:`OrthancServer` in ``directory``; stop it (and keep its files) afterwards."""
    server = OrthancServer(directory, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def available() -> str | None:
    """``None`` when Orthanc can run here, else why not (for a clear test error)."""
    if not os.access(ORTHANC_BINARY, os.X_OK):
        return f"{ORTHANC_BINARY} missing: install Debian's 'orthanc' (bash scripts/system-deps.sh)"
    if shutil.which("dcmsend") is None:
        return "dcmtk's dcmsend missing: install Debian's 'dcmtk'"
    return None
