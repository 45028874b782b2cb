"""Differential check: the same samples in usarchive and Orthanc (Debian package), the same findscu queries.

Each case of :data:`CASES` runs the same ``findscu`` command against both
archives and compares the sets of entities answered (by their unique key)
and the number of responses (one per entity on both). Where the two differ
by design the case names the difference, both sides are checked against
what each should answer, and docs/conformance.md ("Differences from Orthanc")
explains it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from qr_peers import findscu
from qr_samples import Samples, write_samples
from support.orthanc import OrthancServer, available

from archive.archive import Archive
from archive.ingest import Origin
from archive.settings import ArchiveSettings
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer

UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


@dataclass(frozen=True)
class Case:
    name: str
    keys: tuple[str, ...]
    model: str = "-S"
    query_name: str | None = None  # PatientName in a query file (in ``charset``) instead of -k
    charset: tuple[str, ...] = ("ISO_IR 192",)
    #: (ours, Orthanc's) study letters where the two differ by design (see docs/conformance.md)
    differs: tuple[str, str] | None = None


CASES = (
    Case("all studies", ("0008,0052=STUDY", "0020,000D")),
    Case("patient id", ("0008,0052=STUDY", "0020,000D", "0010,0020=P001")),
    Case("name wildcard, other case", ("0008,0052=STUDY", "0020,000D", "0010,0010=doe*")),
    Case("name single value, other case", ("0008,0052=STUDY", "0020,000D", "0010,0010=DOE^JANE")),
    Case("name ? wildcard", ("0008,0052=STUDY", "0020,000D", "0010,0010=R?e^Rick")),
    Case("date range", ("0008,0052=STUDY", "0020,000D", "0008,0020=20240306-20240430")),
    Case("open date range", ("0008,0052=STUDY", "0020,000D", "0008,0020=20240501-")),
    Case("single date", ("0008,0052=STUDY", "0020,000D", "0008,0020=20240310")),
    Case("UID list", ("0008,0052=STUDY", "0020,000D=@B\\@E")),
    Case("patient root study", ("0008,0052=STUDY", "0010,0020=P001", "0020,000D"), model="-P"),
    Case("name component group, another case", ("0008,0052=STUDY", "0020,000D"), query_name="WANG*"),
    Case("time range", ("0008,0052=STUDY", "0020,000D", "0008,0030=100000-110000")),
    Case("accession wildcard", ("0008,0052=STUDY", "0020,000D", "0008,0050=ACC?")),
    Case("description wildcard", ("0008,0052=STUDY", "0020,000D", "0008,1030=*OT")),
    Case("modalities in study", ("0008,0052=STUDY", "0020,000D", "0008,0061=OT")),
    Case("series of a study", ("0008,0052=SERIES", "0020,000D=@A", "0020,000E", "0008,0060")),
    Case("series by modality", ("0008,0052=SERIES", "0020,000E", "0008,0060=OT")),
    Case("images of a study", ("0008,0052=IMAGE", "0020,000D=@A", "0008,0018")),
    Case("patients", ("0008,0052=PATIENT", "0010,0020", "0010,0010"), model="-P"),
    Case(
        "patient root series", ("0008,0052=SERIES", "0010,0020=P001", "0020,000D=@A", "0020,000E"), model="-P"
    ),
    Case(
        "patient root images",
        ("0008,0052=IMAGE", "0010,0020=P001", "0020,000D=@A", "0020,000E", "0008,0018"),
        model="-P",
    ),
    Case("patients by name", ("0008,0052=PATIENT", "0010,0020", "0010,0010=ROE*"), model="-P"),
    Case("name alphabetic group prefix", ("0008,0052=STUDY", "0020,000D"), query_name="Yamada*"),
    Case(
        "whole name in ISO 2022 IR 87",
        ("0008,0052=STUDY", "0020,000D"),
        query_name="Yamada^Tarou=山田^太郎=やまだ^たろう",
        charset=("", "ISO 2022 IR 87"),
    ),
    Case(
        "name ideographic group alone",
        ("0008,0052=STUDY", "0020,000D"),
        query_name="山田^太郎",
        differs=("C", ""),
    ),
)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Samples]]:
    why = available()
    if why is not None:
        pytest.fail(why)
    root = tmp_path_factory.mktemp("differential")
    samples = write_samples(root / "samples")
    orthanc = OrthancServer(
        root / "orthanc", aet="ORTHANC", modalities={"finder": ("FINDER", "127.0.0.1", 1)}
    )
    orthanc.start()
    try:
        for path in samples.files:
            orthanc.client.request("POST", "/instances", path.read_bytes(), "application/dicom")
        with Archive.open(ArchiveSettings(root / "usarchive")) as archive:
            for path in samples.files:
                archive.ingest(path, origin=Origin("file"))
            finder = PeerPermissions(AllowedPeer("FINDER"), frozenset({Permission.FIND}))
            settings = BridgeSettings(host="127.0.0.1", port=0, permissions=(finder,))
            with BridgeServer(settings, archive) as ours:
                yield ours.port, orthanc.dicom_port, samples
    finally:
        orthanc.stop()


def _keys(case: Case, samples: Samples) -> list[str]:
    """The case's keys with ``@X`` replaced by the Study Instance UID of sample study X."""
    keys = list(case.keys)
    for letter, uid in samples.studies.items():
        keys = [key.replace(f"@{letter}", uid) for key in keys]
    return keys


def _answered(port: int, called: str, case: Case, samples: Samples, out: Path) -> list[str]:
    query: Path | None = None
    if case.query_name is not None:
        ds = Dataset()
        ds.SpecificCharacterSet = list(case.charset) if len(case.charset) > 1 else case.charset[0]
        ds.PatientName = case.query_name
        query = out / "query.dcm"
        out.mkdir(parents=True, exist_ok=True)
        ds.save_as(query, implicit_vr=False, little_endian=True)
    result = findscu(port, _keys(case, samples), out, model=case.model, called=called, query_file=query)
    assert result.ok, result.output
    level = next(key.split("=")[1] for key in case.keys if key.startswith("0008,0052="))
    return sorted(str(ds.get(UNIQUE[level], "")) for ds in result.responses)


def _letters(samples: Samples, uids: list[str]) -> str:
    by_uid = {uid: letter for letter, uid in samples.studies.items()}
    return "".join(sorted(by_uid[uid] for uid in uids))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_same_matches_as_orthanc(both: tuple[int, int, Samples], case: Case, tmp_path: Path) -> None:
    ours_port, orthanc_port, samples = both
    ours = _answered(ours_port, "USARCHIVE", case, samples, tmp_path / "ours")
    theirs = _answered(orthanc_port, "ORTHANC", case, samples, tmp_path / "orthanc")
    assert len(ours) == len(set(ours)), "usarchive answered an entity twice"
    if case.differs is None:
        assert ours == theirs
        assert ours or case.name == "nothing", "a case that matches nothing tests little"
    else:
        assert (_letters(samples, ours), _letters(samples, theirs)) == case.differs
