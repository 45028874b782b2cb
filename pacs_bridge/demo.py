"""The capture demo of ``make run``: a real DICOM sender stores sample clips into ``usarchive serve``.

Run as ``python -m pacs_bridge.demo [SAMPLE_DIR]`` (the data directory comes from
``--data-dir`` or ``USARCHIVE_HOME``). Steps:

1. create the archive (``usarchive init``, which keeps an existing one) and start
   ``usarchive serve`` on a free loopback port, allowing the calling AE
   title ``USDEMO``;
2. poll with dcmtk ``echoscu`` (or pynetdicom without dcmtk) until it answers;
3. send every DICOM file of SAMPLE_DIR with dcmtk ``storescu`` (or pynetdicom), as stored (one
   run per transfer syntax with the matching proposal, so nothing is transcoded);
4. stop the server with SIGTERM (it finishes in-flight stores);
5. print ``usarchive find``: the archive's index of what arrived.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

#: storescu's option proposing a compressed transfer syntax (plus the uncompressed ones);
#: files in any other syntax are sent with ``-x=`` (all uncompressed).
STORESCU_PROPOSAL: dict[str, str] = {
    JPEGBaseline8Bit: "-xy",
    JPEGExtended12Bit: "-xx",
    JPEGLosslessSV1: "-xs",
    JPEG2000Lossless: "-xv",
    JPEG2000: "-xw",
    JPEGLSLossless: "-xt",
    JPEGLSNearLossless: "-xu",
    RLELossless: "-xr",
    ExplicitVRBigEndian: "-xb",
}

DEMO_AET = "USDEMO"
_READY_TIMEOUT_S = 120.0


def group_by_proposal(files: list[Path]) -> dict[str, list[Path]]:
    """DICOM files grouped by the storescu proposal option that sends them untranscoded.

    Files pydicom cannot read as DICOM are left out.
    """
    groups: dict[str, list[Path]] = {}
    for path in files:
        try:
            meta = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta
        except (InvalidDicomError, OSError, ValueError):
            continue
        syntax = str(meta.get("TransferSyntaxUID", ""))
        groups.setdefault(STORESCU_PROPOSAL.get(syntax, "-x="), []).append(path)
    return groups


def _usarchive() -> list[str]:
    executable = Path(sys.executable).with_name("usarchive")
    return [str(executable)] if executable.exists() else ["usarchive"]


def have_dcmtk() -> bool:
    """Whether dcmtk's ``echoscu`` and ``storescu`` are on PATH."""
    return all(shutil.which(tool) is not None for tool in ("echoscu", "storescu"))


def _echo(port: int, use_dcmtk: bool) -> bool:
    if use_dcmtk:
        echo = subprocess.run(
            ["echoscu", "-aet", DEMO_AET, "-aec", "USARCHIVE", "127.0.0.1", str(port)],
            capture_output=True,
            check=False,
        )
        return echo.returncode == 0
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=DEMO_AET)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and int(status.Status) == 0


def send_with_pynetdicom(port: int, files: list[Path]) -> int:
    """C-STORE ``files`` as stored (each in its own transfer syntax) with pynetdicom; the number sent.

    The sender ``make run`` uses when dcmtk is not installed: the capture is never skipped.

    Raises
    ------
    click.ClickException
        If the association is refused or a store does not succeed.
    """
    from pynetdicom import AE

    datasets = [(path, pydicom.dcmread(path)) for path in files]
    ae = AE(ae_title=DEMO_AET)
    for pair in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets}):
        ae.add_requested_context(pair[0], [pair[1]])
    assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE")
    if not assoc.is_established:
        raise click.ClickException("usarchive serve refused the association of the pynetdicom sender")
    try:
        for path, ds in datasets:
            status = assoc.send_c_store(ds)
            if not status or int(status.Status) != 0:
                raise click.ClickException(f"C-STORE of {path} failed: {status}")
    finally:
        assoc.release()
    return len(datasets)


def _wait_for_echo(port: int, process: subprocess.Popen[str], use_dcmtk: bool = True) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException("usarchive serve exited before answering C-ECHO")
        if _echo(port, use_dcmtk):
            return
        time.sleep(0.1)
    raise click.ClickException(f"usarchive serve did not answer C-ECHO within {_READY_TIMEOUT_S:.0f} s")


@click.command()
@click.argument(
    "sample_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("sample_dicom")
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="USARCHIVE_HOME",
    help="Archive data directory (env USARCHIVE_HOME).",
)
def main(sample_dir: Path, data_dir: Path | None) -> None:
    """Capture SAMPLE_DIR over DICOM into the archive and print its index.

    The sender is dcmtk's storescu; without dcmtk, pynetdicom sends the same files.
    """
    use_dcmtk = have_dcmtk()
    sender = "storescu" if use_dcmtk else "pynetdicom (dcmtk is not installed)"
    files = sorted(p for p in sample_dir.rglob("*") if p.is_file())
    groups = group_by_proposal(files)
    if not groups:
        raise click.ClickException(f"no DICOM files in {sample_dir}; generate samples first (make samples)")
    root = _usarchive() + (["--data-dir", str(data_dir)] if data_dir else [])
    if subprocess.run([*root, "init"], check=False).returncode != 0:
        raise click.ClickException("usarchive init failed")
    click.echo(f"starting usarchive serve (allowing {DEMO_AET}) ...")
    server = subprocess.Popen(
        [*root, "serve", "--host", "127.0.0.1", "--port", "0", "--allow", DEMO_AET],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"listening on [^:]+:(\d+)", line)
        if match is None:
            raise click.ClickException(f"usarchive serve did not start: {line.strip()!r}")
        port = int(match.group(1))
        _wait_for_echo(port, server, use_dcmtk)
        click.echo(f"usarchive serve answers C-ECHO on 127.0.0.1:{port}")
        sent = 0
        if not use_dcmtk:
            sent = send_with_pynetdicom(port, [path for paths in groups.values() for path in paths])
        for option, paths in groups.items() if use_dcmtk else ():
            command = ["storescu", "-aet", DEMO_AET, "-aec", "USARCHIVE", option, "127.0.0.1", str(port)]
            result = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise click.ClickException(f"storescu failed:\n{result.stdout}{result.stderr}")
            sent += len(paths)
        click.echo(f"{sender} sent {sent} files from {sample_dir}")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    click.echo("index of what arrived (usarchive find):")
    found = subprocess.run([*root, "--format", "table", "find"], check=False)
    if found.returncode != 0:
        raise click.ClickException("usarchive find failed")


if __name__ == "__main__":
    main()
