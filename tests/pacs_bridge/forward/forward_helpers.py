"""Helpers of the forwarding tests: a usarchive.toml with a destination, serve as a process, dcmsend."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
from bridge_helpers import USARCHIVE, run
from support.orthanc import OrthancServer, dataset_bytes


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path,
    pacs: OrthancServer | None,
    *,
    destination: Mapping[str, Any] | None = None,
    forward: Mapping[str, Any] | None = None,
    route: Mapping[str, Any] | None = None,
    allow: Sequence[str] = ("SCANNER", "ORTHANC"),
    port: tuple[str, int] | None = None,
) -> Path:
    """A ``usarchive.toml``: receiver allowing ``allow``, destination ``PACS`` = ``pacs``, one route."""
    lines = ["[server]", 'aet = "USARCHIVE"', f"allow = {_toml_value(list(allow))}", ""]
    dest: dict[str, Any] = {
        "retry_base_s": 1.0,
        "retry_multiplier": 2.0,
        "retry_max_delay_s": 4.0,
        "max_attempts": 50,
        "timeout_s": 10.0,
    }
    if pacs is not None:
        dest.update({"ae_title": pacs.aet, "host": pacs.host, "port": pacs.dicom_port})
    elif port is not None:
        dest.update({"ae_title": port[0], "host": "127.0.0.1", "port": port[1]})
    dest.update(destination or {})
    lines.append("[destinations.PACS]")
    lines += [f"{key} = {_toml_value(value)}" for key, value in dest.items()]
    lines += ["", "[forward]"]
    fwd: dict[str, Any] = {"enabled": True, "lease_s": 30.0, "poll_s": 0.2}
    fwd.update(forward or {})
    lines += [f"{key} = {_toml_value(value)}" for key, value in fwd.items()]
    lines += ["", "[[forward.routes]]", 'destination = "PACS"']
    lines += [f"{key} = {_toml_value(value)}" for key, value in (route or {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def usarchive(config: Path, data_dir: Path, *args: str, db_url: str | None = None) -> list[str]:
    """The command line of ``usarchive`` on this configuration and data directory."""
    command = [USARCHIVE, "--config", str(config), "--data-dir", str(data_dir)]
    if db_url:
        command += ["--db", db_url]
    return [*command, *args]


def init_archive(config: Path, data_dir: Path, *, db_url: str | None = None) -> None:
    """``usarchive init`` (every other command refuses a directory without an archive)."""
    result = run(usarchive(config, data_dir, "init", db_url=db_url), timeout_s=120)
    assert result.returncode == 0, result.stderr


def start_serve(
    config: Path, data_dir: Path, log_path: Path, *, db_url: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start ``usarchive -v serve --port 0`` (forwarding as configured); return it and its port."""
    env = dict(os.environ)
    env.pop("USARCHIVE_DB", None)
    command = usarchive(config, data_dir, "-v", "serve", "--host", "127.0.0.1", "--port", "0", db_url=db_url)
    with log_path.open("a") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on [^:]+:(\d+)", line)
    if match is None:
        process.kill()
        process.wait()
        raise AssertionError(f"usarchive serve did not start: {line!r}\n{log_path.read_text()[-3000:]}")
    return process, int(match.group(1))


def dcmsend(port: int, files: Iterable[Path], *, calling: str = "SCANNER", called: str = "USARCHIVE") -> str:
    """dcmtk ``dcmsend`` of ``files`` as they are (no transcoding); its output. Fails on an error."""
    paths = [str(p) for p in files]
    result = run(
        ["dcmsend", "-aet", calling, "-aec", called, "--no-halt", "-v", "127.0.0.1", str(port), *paths],
        timeout_s=300,
    )
    assert result.returncode == 0, f"dcmsend failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return str(result.stdout) + str(result.stderr)


def sop_uid(path: Path) -> str:
    """The SOP Instance UID of a file."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_in_orthanc_identical(pacs: OrthancServer, files: Iterable[Path]) -> None:
    """Every file is in Orthanc with exactly the same data set bytes (after the file meta)."""
    client = pacs.client
    for path in files:
        found = client.find_instance(sop_uid(path))
        assert found is not None, f"{path.name} ({sop_uid(path)}) is not in Orthanc"
        assert dataset_bytes(client.instance_file(found)) == dataset_bytes(path.read_bytes()), path.name


def kill_quietly(process: subprocess.Popen[str]) -> None:
    """SIGKILL (if still running) and reap."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def stop_serve(process: subprocess.Popen[str]) -> None:
    """SIGTERM and wait (a clean stop); SIGKILL after 60 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
