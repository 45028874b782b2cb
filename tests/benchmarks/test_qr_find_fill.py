"""The qr_find benchmark's bulk-filled usarchive answers its queries as real ingest of its files does.

Part 2 of ``benchmarks.bench_qr_find`` fills Orthanc with ``small_studies``
through its real ingest but usarchive by the bulk inserts of
``bench_find.populate`` (real ingest of 100,000 files would take longer than
the benchmark). The comparison is fair only if both hold the same studies:
here a small set of those files goes through ``Archive.ingest_many`` and the
benchmark's own queries must return the same answers from both archives.
"""

from __future__ import annotations

import random
from pathlib import Path

from archive.archive import Archive
from archive.ingest import Origin
from archive.query import FindRequest, InformationModel, MatchSettings, find
from archive.settings import ArchiveSettings
from benchmarks.bench_find import DAYS, FIRST_DAY, populate
from benchmarks.bench_qr_find import _identifier, _kinds
from benchmarks.qr_find_fill import PER_STUDY, small_studies

INSTANCES = 40 * PER_STUDY  # 40 studies, 20 patients
SEED = 11
KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "StudyDate",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "ModalitiesInStudy",
)


def _answers(archive: Archive, keys: list[str]) -> list[tuple[str, ...]]:
    identifier = _identifier(keys)
    for keyword in KEYS:
        if keyword not in identifier:
            setattr(identifier, keyword, "")
    request = FindRequest.parse(identifier, InformationModel.STUDY_ROOT)
    settings = MatchSettings(max_results=10_000)
    found = find(archive.engine, request, settings, resolve_path=archive.store.absolute)
    return sorted(tuple(str(response.get(keyword, "")) for keyword in KEYS) for response in found)


def test_bulk_fill_and_real_ingest_answer_the_benchmarks_queries_alike(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    paths = []
    for n, data in enumerate(data for study in small_studies(INSTANCES, SEED) for data in study):
        paths.append(files / f"{n}.dcm")
        paths[-1].write_bytes(data)
    with (
        Archive.open(ArchiveSettings(tmp_path / "ingested")) as ingested,
        Archive.open(ArchiveSettings(tmp_path / "bulk")) as bulk,
    ):
        results = ingested.ingest_many(paths, origins=[Origin("file")] * len(paths))
        assert len(results) == INSTANCES
        info = populate(bulk, INSTANCES, SEED)
        assert info["instances"] == INSTANCES
        queries: list[list[str]] = [[]]  # every study
        for make in _kinds(random.Random(SEED), info["patients"], "PAT{:07d}", FIRST_DAY, DAYS).values():
            queries += [make() for _ in range(15)]
        matched = 0
        for keys in queries:
            expected = _answers(ingested, keys)
            assert _answers(bulk, keys) == expected, keys
            matched += len(expected)
        assert len(_answers(ingested, [])) == INSTANCES // PER_STUDY
        assert matched > len(queries), "the queries must find studies"
