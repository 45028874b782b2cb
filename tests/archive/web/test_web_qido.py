"""QIDO-RS through dicomweb-client against a live ``usarchive web``, checked against the sample files."""

from __future__ import annotations

from collections import Counter

import requests
from sqlalchemy import select
from web_served import Served, client

from archive.index import schema


def _values(result: dict, tag: str) -> list:
    return result.get(tag, {}).get("Value", [])


def _uids(results: list[dict], tag: str) -> set[str]:
    return {_values(r, tag)[0] for r in results}


def test_all_studies_with_counts_from_the_files(served: Served) -> None:
    headers = [served.sample(name) for name in served.samples]
    expected = Counter(h.StudyInstanceUID for h in headers)
    found = client(served).search_for_studies()
    assert _uids(found, "0020000D") == set(expected)
    for result in found:
        study = _values(result, "0020000D")[0]
        assert _values(result, "00201208") == [expected[study]]
        assert _values(result, "00080061") == ["US"]
        assert _values(result, "00081190")[0].endswith(f"/dicomweb/studies/{study}")


def test_wildcard_and_fuzzy_person_names(served: Served) -> None:
    web = client(served)
    alpha = {h.StudyInstanceUID for h in map(served.sample, served.samples) if h.PatientID == "PH000001"}
    assert _uids(web.search_for_studies(search_filters={"PatientID": "PH00000*"}), "0020000D") == {
        served.sample(n).StudyInstanceUID for n in served.samples
    }
    assert web.search_for_studies(search_filters={"PatientName": "phantom^al"}) == []
    fuzzy = web.search_for_studies(search_filters={"PatientName": "phantom^al"}, fuzzymatching=True)
    assert _uids(fuzzy, "0020000D") == alpha
    assert _uids(web.search_for_studies(search_filters={"PatientName": "PHANTOM^ALPHA"}), "0020000D") == alpha


def test_series_and_instances_of_a_study_and_of_the_archive(served: Served) -> None:
    web = client(served)
    headers = [served.sample(name) for name in served.samples]
    study = served.sample("l4_ot_inplane_jpeg").StudyInstanceUID
    series = served.sample("l4_ot_inplane_jpeg").SeriesInstanceUID
    in_study = web.search_for_series(study)
    assert _uids(in_study, "0020000E") == {
        h.SeriesInstanceUID for h in headers if h.StudyInstanceUID == study
    }
    assert _values(in_study[0], "00201209") == [2]
    everything = web.search_for_series(search_filters={"Modality": "US"})
    assert _uids(everything, "0020000E") == {h.SeriesInstanceUID for h in headers}
    assert all(_values(r, "0020000D") for r in everything)  # the study of each series comes along
    instances = web.search_for_instances(study, series)
    assert _uids(instances, "00080018") == {
        h.SOPInstanceUID for h in headers if h.SeriesInstanceUID == series
    }
    frames = {_values(r, "00080018")[0]: _values(r, "00280008") for r in instances}
    assert frames[served.sample("l4_ot_inplane_jpeg").SOPInstanceUID] == [32]
    assert _uids(web.search_for_instances(), "00080018") == {h.SOPInstanceUID for h in headers}


def test_limit_offset_page_through_every_instance(served: Served) -> None:
    url = f"{served.url}/instances"
    auth = {"Authorization": f"Bearer {served.tokens['reader']}", "Accept": "application/dicom+json"}
    first = requests.get(url, params={"limit": 3}, headers=auth, timeout=30)
    rest = requests.get(url, params={"limit": 10, "offset": 3}, headers=auth, timeout=30)
    assert first.status_code == 200 and "offset=3" in first.headers["Warning"]
    assert "Warning" not in rest.headers
    a, b = _uids(first.json(), "00080018"), _uids(rest.json(), "00080018")
    assert len(a) == 3 and len(b) == 4 and not a & b
    assert a | b == {served.sample(n).SOPInstanceUID for n in served.samples}
    empty = requests.get(url, params={"offset": 7}, headers=auth, timeout=30)
    assert empty.status_code == 204


def test_includefield_all_and_header_attributes(served: Served) -> None:
    web = client(served)
    uid = served.sample("l4_tt_inplane_mono").SOPInstanceUID
    (found,) = web.search_for_instances(search_filters={"SOPInstanceUID": uid}, fields=["all"])
    assert _values(found, "00280004") == ["MONOCHROME2"]
    assert _values(found, "00280010") == [280]
    (spacing,) = web.search_for_instances(search_filters={"SOPInstanceUID": uid}, fields=["00181063"])
    assert _values(spacing, "00181063") == [float(served.sample("l4_tt_inplane_mono").FrameTime)]


def test_private_procedure_keys_match_and_return(served: Served) -> None:
    web = client(served)
    # What the archive's rules classified (usarchive find's table), read from the index itself.
    table = schema.instance.join(
        schema.instance_level, schema.instance_level.c.instance_pk == schema.instance.c.id
    )
    with served.archive.engine.connect() as connection:
        rows = connection.execute(
            select(schema.instance.c.sop_instance_uid, schema.instance_level.c.level).select_from(table)
        ).all()
    truth = {uid: level for uid, level in rows if level == "L4"}
    assert truth
    l4 = web.search_for_instances(search_filters={"USArchiveSpinalLevels": "L4"})
    assert _uids(l4, "00080018") == {uid for uid, level in truth.items() if level == "L4"}
    assert all("L4" in _values(r, "00111001") for r in l4)
    assert _values(l4[0], "00110010") == ["USARCHIVE 1.0"]
    by_tag = web.search_for_instances(search_filters={"00111001": "L4"})
    assert _uids(by_tag, "00080018") == _uids(l4, "00080018")


def test_date_range(served: Served) -> None:
    web = client(served)
    dates = {served.sample(n).StudyInstanceUID: served.sample(n).StudyDate for n in served.samples}
    day = sorted(dates.values())[0]
    found = web.search_for_studies(search_filters={"StudyDate": f"{day}-{day}"})
    assert _uids(found, "0020000D") == {s for s, d in dates.items() if d == day}


def test_bad_queries_are_400_with_the_reason(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.tokens['reader']}"}
    for params, words in (
        ({"NoSuchKeyword": "x"}, "expected a DICOM keyword"),
        ({"00400275.00401001": "x"}, "sequence attribute paths"),
        ({"limit": "-1"}, "limit: expected a whole number"),
        ({"StudyDate": "2024-05"}, "StudyDate"),
        ({"ReferringPhysicianName": "X"}, "does not index this attribute"),
    ):
        answer = requests.get(f"{served.url}/studies", params=params, headers=auth, timeout=30)
        assert answer.status_code == 400, params
        assert words in answer.text, (params, answer.text)
