"""Differential check: the same samples in usarchive and Orthanc (Debian package), the same findscu queries.

Each case of :data:`CASES` runs the same ``findscu`` command against both
archives and compares the sets of entities answered (by their unique key)
and the number of responses (one per entity on both). Where the two differ
by design the case names the difference, both sides are checked against
what each should answer, and docs/conformance.md ("Differences from Orthanc")
explains it.

The samples carry sequences too (:class:`qr_samples.StudySequences`): study
A a Procedure Code Sequence (MBB) and, in its first series, the Request
Attributes item of the worklist entry ``L5``; study B a Procedure Code
Sequence (RF) and the item of entry ``L4``; study D a Referenced Study
Sequence naming study A. Orthanc 1.10 ignores a value in a sequence key of a
C-FIND outside the worklist (it logs "Orthanc only supports sequence matching
on worklists") and answers as if the key were universal, so those cases
differ by design. A sequence key without values (no item, or an item of empty
attributes) is a return key on both, and then the items returned are compared
too (``returned``): equal, except that we return only the attributes the
key's item asks for, Orthanc the stored items whole (``narrowed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from qr_peers import findscu
from qr_samples import Samples, StudySequences, schedule_examples, write_samples
from support.orthanc import OrthancServer, available

from archive.archive import Archive
from archive.ingest import Origin
from archive.model import ProcedureType, SpinalLevel
from archive.settings import ArchiveSettings
from archive.worklist.model import LEVEL_CODES, WorklistEntry
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
    #: (ours, Orthanc's) entities where the two differ by design (see docs/conformance.md):
    #: study letters, series as ``A/1`` (study letter / series number), space-separated
    differs: tuple[str, str] | None = None
    #: a sequence (keyword) whose returned items are compared entity by entity
    returned: str = ""
    #: the attributes the key's item asks for, when only usarchive narrows the items to them
    #: (Orthanc returns the stored items whole): ours must be Orthanc's items cut to these
    narrowed: tuple[str, ...] = ()


_ALL_STUDIES = "A B C D E"
_ALL_SERIES = "A/1 A/2 B/1 C/1 D/1 E/1"


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
    Case(
        "procedure code value",
        ("0008,0052=STUDY", "0020,000D", "0008,1032[0].0008,0100=MBB"),
        differs=("A", _ALL_STUDIES),
    ),
    Case(
        "procedure code list, meaning returned",
        ("0008,0052=STUDY", "0020,000D", "0008,1032[0].0008,0100=MBB\\RF", "0008,1032[0].0008,0104"),
        differs=("A B", _ALL_STUDIES),
    ),
    Case(
        "referenced study",
        ("0008,0052=STUDY", "0020,000D", "0008,1110[0].0008,1155=@A"),
        differs=("D", _ALL_STUDIES),
    ),
    Case(
        "requested procedure id",
        ("0008,0052=SERIES", "0020,000E", "0040,0275[0].0040,1001=@L5.rp"),
        differs=("A/1", _ALL_SERIES),
    ),
    Case(
        "nested protocol code with step id",
        (
            "0008,0052=SERIES",
            "0020,000E",
            "0040,0275[0].0040,0009=@L4.step",
            "0040,0275[0].0040,0008[0].0008,0100=@L4.level",
        ),
        differs=("B/1", _ALL_SERIES),
    ),
    Case(
        "procedure code sequence returned",
        ("0008,0052=STUDY", "0020,000D", "0008,1032"),
        returned="ProcedureCodeSequence",
    ),
    Case(
        "request attributes returned",
        ("0008,0052=SERIES", "0020,000E", "0040,0275"),
        returned="RequestAttributesSequence",
    ),
    Case(
        "referenced study returned",
        ("0008,0052=STUDY", "0020,000D", "0008,1110"),
        returned="ReferencedStudySequence",
    ),
    Case(
        "referenced study, one attribute asked",
        ("0008,0052=STUDY", "0020,000D", "0008,1110[0].0008,1155"),
        returned="ReferencedStudySequence",
        narrowed=("ReferencedSOPInstanceUID",),
    ),
    Case(
        "request attributes, one attribute asked",
        ("0008,0052=SERIES", "0020,000E", "0040,0275[0].0040,1001"),
        returned="RequestAttributesSequence",
        narrowed=("RequestedProcedureID",),
    ),
)


def _sequences(entries: dict[str, WorklistEntry]) -> dict[str, StudySequences]:
    """The sequences of the samples (see the module's docstring)."""
    return {
        "A": StudySequences(ProcedureType.MEDIAL_BRANCH_BLOCK, requests={1: entries["L5"]}),
        "B": StudySequences(ProcedureType.RADIOFREQUENCY, requests={1: entries["L4"]}),
        "D": StudySequences(referenced_study="A"),
    }


@dataclass(frozen=True)
class Loaded:
    """The samples as loaded into both archives, and the worklist entries their requests came from."""

    samples: Samples
    entries: dict[str, WorklistEntry]

    def placeholders(self) -> dict[str, str]:
        """``@A`` → study A's UID; ``@L5.rp``, ``@L5.step``, ``@L5.level`` → entry L5's identifiers."""
        found = {f"@{letter}": uid for letter, uid in self.samples.studies.items()}
        for name, entry in self.entries.items():
            found[f"@{name}.rp"] = entry.requested_procedure_id
            found[f"@{name}.step"] = entry.step_id
            found[f"@{name}.level"] = LEVEL_CODES[SpinalLevel(name)].value
        return found

    def labels(self) -> dict[str, str]:
        """Study UID → its letter, series UID → ``letter/number``."""
        found = {uid: letter for letter, uid in self.samples.studies.items()}
        for letter, uids in self.samples.series.items():
            found.update({uid: f"{letter}/{number}" for number, uid in enumerate(uids, start=1)})
        return found


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Loaded]]:
    why = available()
    if why is not None:
        pytest.fail(why)
    root = tmp_path_factory.mktemp("differential")
    orthanc = OrthancServer(
        root / "orthanc", aet="ORTHANC", modalities={"finder": ("FINDER", "127.0.0.1", 1)}
    )
    orthanc.start()
    try:
        with Archive.open(ArchiveSettings(root / "usarchive")) as archive:
            entries = schedule_examples(archive)
            samples = write_samples(root / "samples", _sequences(entries))
            for path in samples.files:
                orthanc.client.request("POST", "/instances", path.read_bytes(), "application/dicom")
                archive.ingest(path, origin=Origin("file"))
            finder = PeerPermissions(AllowedPeer("FINDER"), frozenset({Permission.FIND}))
            settings = BridgeSettings(host="127.0.0.1", port=0, permissions=(finder,))
            with BridgeServer(settings, archive) as ours:
                yield ours.port, orthanc.dicom_port, Loaded(samples, entries)
    finally:
        orthanc.stop()


def _keys(case: Case, loaded: Loaded) -> list[str]:
    """The case's keys with the placeholders (``@A``, ``@L5.rp``, ...) replaced."""
    keys = list(case.keys)
    for placeholder, value in loaded.placeholders().items():
        keys = [key.replace(placeholder, value) for key in keys]
    return keys


def _items(sequence: DicomSequence) -> list[tuple[object, ...]]:
    """Items (in any order) as ``(keyword, value)`` pairs, nested sequences the same way (for comparison)."""
    return sorted(
        tuple(
            (
                element.keyword,
                tuple(_items(element.value)) if element.VR == "SQ" else str(element.value).strip(),
            )
            for element in item
        )
        for item in sequence
    )


def _cut(items: list[tuple[object, ...]], keywords: tuple[str, ...]) -> list[tuple[object, ...]]:
    """``items`` (as :func:`_items` gives them) with only the attributes named."""
    return sorted(
        tuple(pair for pair in item if isinstance(pair, tuple) and pair[0] in keywords) for item in items
    )


@dataclass(frozen=True)
class Answered:
    """Entities answered (their unique keys, sorted) and the items of ``Case.returned`` by entity."""

    uids: list[str]
    returned: dict[str, list[tuple[object, ...]]]


def _answered(port: int, called: str, case: Case, loaded: Loaded, out: Path) -> Answered:
    query: Path | None = None
    if case.query_name is not None:
        ds = Dataset()
        ds.SpecificCharacterSet = list(case.charset) if len(case.charset) > 1 else case.charset[0]
        ds.PatientName = case.query_name
        query = out / "query.dcm"
        out.mkdir(parents=True, exist_ok=True)
        ds.save_as(query, implicit_vr=False, little_endian=True)
    result = findscu(port, _keys(case, loaded), out, model=case.model, called=called, query_file=query)
    assert result.ok, result.output
    level = next(key.split("=")[1] for key in case.keys if key.startswith("0008,0052="))
    uids = sorted(str(ds.get(UNIQUE[level], "")) for ds in result.responses)
    returned = {}
    if case.returned:
        returned = {
            str(ds.get(UNIQUE[level], "")): _items(ds.get(case.returned) or DicomSequence())
            for ds in result.responses
        }
    return Answered(uids, returned)


def _labels(loaded: Loaded, uids: list[str]) -> str:
    labels = loaded.labels()
    return " ".join(sorted(labels[uid] for uid in uids))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_same_matches_as_orthanc(both: tuple[int, int, Loaded], case: Case, tmp_path: Path) -> None:
    ours_port, orthanc_port, loaded = both
    ours = _answered(ours_port, "USARCHIVE", case, loaded, tmp_path / "ours")
    theirs = _answered(orthanc_port, "ORTHANC", case, loaded, tmp_path / "orthanc")
    assert len(ours.uids) == len(set(ours.uids)), "usarchive answered an entity twice"
    if case.differs is None:
        assert ours.uids == theirs.uids
        assert ours.uids or case.name == "nothing", "a case that matches nothing tests little"
    else:
        assert (_labels(loaded, ours.uids), _labels(loaded, theirs.uids)) == case.differs
    if case.returned:
        labels = loaded.labels()
        mine = {labels[uid]: items for uid, items in ours.returned.items()}
        orthancs = {labels[uid]: items for uid, items in theirs.returned.items()}
        assert any(mine.values()), f"no entity returned a {case.returned}: the case tests little"
        if case.narrowed:
            assert mine == {label: _cut(items, case.narrowed) for label, items in orthancs.items()}
            assert mine != orthancs, "Orthanc now narrows the items too: update the case and the docs"
        else:
            assert mine == orthancs
