"""dcmtk ``findscu`` as the peer of the Query/Retrieve tests: run it, read back every response it received."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

REPO = Path(__file__).resolve().parents[3]
_DCMTK_DICTIONARIES = ("/usr/share/libdcmtk17/dicom.dic", "/usr/share/libdcmtk17/private.dic")
#: dcmtk's dictionaries plus ours, so findscu knows the VR of the USARCHIVE 1.0 private keys.
DCMDICTPATH = ":".join([*_DCMTK_DICTIONARIES, str(REPO / "contrib" / "dcmtk" / "usarchive-private.dic")])


@dataclass(frozen=True)
class FindResult:
    """What one findscu run received."""

    process: subprocess.CompletedProcess[str]
    responses: list[Dataset]

    @property
    def output(self) -> str:
        return self.process.stdout + self.process.stderr

    @property
    def ok(self) -> bool:
        """findscu exited 0 and logged no error (it exits 0 after some failures)."""
        return self.process.returncode == 0 and "E: " not in self.output


def findscu(
    port: int,
    keys: list[str],
    out_dir: Path,
    *,
    model: str = "-S",
    calling: str = "FINDER",
    called: str = "USARCHIVE",
    query_file: Path | None = None,
    extra: list[str] | None = None,
    timeout_s: float = 60.0,
) -> FindResult:
    """Run ``findscu`` against ``127.0.0.1:port`` with ``-k`` keys (and/or a query file).

    Every pending response is extracted (``-X``) into a fresh directory under
    ``out_dir`` and read back with pydicom, in the order received.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"run{len(list(out_dir.iterdir())):03d}"
    target.mkdir()
    args = ["findscu", "-v", model, "-aet", calling, "-aec", called, "-X", "-od", str(target)]
    for key in keys:
        args += ["-k", key]
    args += [*(extra or []), "127.0.0.1", str(port)]
    if query_file is not None:
        args.append(str(query_file))
    env = dict(os.environ, DCMDICTPATH=DCMDICTPATH)
    process = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False, env=env)
    responses = [pydicom.dcmread(path) for path in sorted(target.glob("rsp*.dcm"))]
    return FindResult(process, responses)
