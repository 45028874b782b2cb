"""Authentication, roles, CORS and the access log of a live ``usarchive web``; tokens in the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from web_served import Served, client, start_served

from archive.archive import Archive
from archive.errors import ConfigError
from archive.settings import ArchiveSettings
from archive.web.errors import TokenError
from archive.web.settings import WebSettings
from archive.web.tokens import Role, hash_secret
from archive.web.tokens.sql import web_token


def _paths(served: Served) -> list[str]:
    h = served.sample("l4_tt_inplane_mono")
    instance = f"/studies/{h.StudyInstanceUID}/series/{h.SeriesInstanceUID}/instances/{h.SOPInstanceUID}"
    return ["/studies", f"/studies/{h.StudyInstanceUID}/metadata", instance, f"{instance}/frames/1"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer usa_not-a-token", "revoked", "expired"],
)
def test_refused_without_a_valid_token_and_without_data(served: Served, authorization: str | None) -> None:
    if authorization in ("revoked", "expired"):
        authorization = f"Bearer {served.tokens[authorization]}"
    headers = {"Authorization": authorization} if authorization else {}
    for path in _paths(served):
        answer = requests.get(served.url + path, headers=headers, timeout=30)
        assert answer.status_code == 401, (path, authorization)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.headers["content-type"].startswith("text/plain")
        assert "PHANTOM" not in answer.text and "2.25." not in answer.text


def test_dicomweb_client_sees_401_for_a_revoked_token(served: Served) -> None:
    web = DICOMwebClient(served.url, headers={"Authorization": f"Bearer {served.tokens['revoked']}"})
    with pytest.raises(requests.HTTPError) as raised:
        web.search_for_studies()
    assert raised.value.response.status_code == 401


def test_roles(served: Served) -> None:
    assert client(served, "reader").search_for_studies()
    reviews = f"{served.url}/usarchive/reviews"
    as_reader = requests.get(
        reviews, headers={"Authorization": f"Bearer {served.tokens['reader']}"}, timeout=30
    )
    assert as_reader.status_code == 403 and "reviewer" in as_reader.text and "2.25." not in as_reader.text
    as_reviewer = requests.get(
        reviews, headers={"Authorization": f"Bearer {served.tokens['reviewer']}"}, timeout=30
    )
    assert as_reviewer.status_code == 200
    assert all(set(r) >= {"study", "instance", "reviewer", "status"} for r in as_reviewer.json())


def test_reviewers_see_review_status_and_annotations(served: Served) -> None:
    from archive.review import ClipAnnotation

    h = served.sample("c45_danger_mono")
    annotation = ClipAnnotation.new(h.SOPInstanceUID, "dr.web", int(h.NumberOfFrames), (h.Rows, h.Columns))
    saved = served.archive.annotations.save(annotation, base_version=None)
    reviews = f"{served.url}/usarchive/reviews"
    annotations = f"{served.url}/usarchive/instances/{h.SOPInstanceUID}/annotations"

    def get(url: str, role: str, **params: str) -> requests.Response:
        return requests.get(
            url, params=params, headers={"Authorization": f"Bearer {served.tokens[role]}"}, timeout=30
        )

    (state,) = get(reviews, "reviewer", study=h.StudyInstanceUID).json()
    assert state["instance"] == h.SOPInstanceUID and state["reviewer"] == "dr.web"
    assert state["version"] == saved.version and state["status"] == "draft"
    (latest,) = get(annotations, "admin").json()
    assert latest["reviewer"] == "dr.web" and latest["annotation"]["sop_instance_uid"] == h.SOPInstanceUID
    refused = get(annotations, "reader")
    assert refused.status_code == 403 and "dr.web" not in refused.text
    missing = get(f"{served.url}/usarchive/instances/1.2.3/annotations", "reviewer")
    assert missing.status_code == 404


def test_revoking_takes_effect_at_once(served: Served) -> None:
    _, secret = served.archive.tokens.create("short-lived", "reader")
    headers = {"Authorization": f"Bearer {secret}"}
    assert requests.get(served.url + "/studies", headers=headers, timeout=30).status_code == 200
    served.archive.tokens.revoke("short-lived")
    assert requests.get(served.url + "/studies", headers=headers, timeout=30).status_code == 401


def test_tokens_are_stored_hashed(served: Served) -> None:
    with served.archive.engine.connect() as connection:
        rows = connection.execute(web_token.select()).all()
    stored = {row.secret_sha256 for row in rows}
    for secret in served.tokens.values():
        assert hash_secret(secret) in stored
        assert all(secret not in str(tuple(row)) for row in rows)
    listed = {t.name: t.state() for t in served.archive.tokens.list()}
    assert listed["revoked"] == "revoked" and listed["expired"] == "expired" and listed["reader"] == "active"


def test_token_store_refusals(tmp_path: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        archive.tokens.create("ohif", Role.READER)
        with pytest.raises(TokenError, match="exists"):
            archive.tokens.create("ohif", Role.ADMIN)
        with pytest.raises(TokenError, match="expected one of"):
            archive.tokens.create("x", "superuser")
        with pytest.raises(TokenError, match="in the future"):
            archive.tokens.create("y", "reader", expires_at=datetime.now(UTC) - timedelta(seconds=1))
        with pytest.raises(TokenError, match="no such token"):
            archive.tokens.revoke("nobody")


def test_access_log_names_token_endpoint_study_and_status(served: Served) -> None:
    h = served.sample("l3_tt_inplane_jpeg")
    path = f"/studies/{h.StudyInstanceUID}/metadata"
    requests.get(
        served.url + path, headers={"Authorization": f"Bearer {served.tokens['reviewer']}"}, timeout=30
    )
    requests.get(served.url + path, timeout=30)
    lines = served.access_log.read_text(encoding="utf-8").splitlines()
    ok = [line for line in lines if f"GET /dicomweb{path} " in line and "status=200" in line]
    refused = [line for line in lines if f"GET /dicomweb{path} " in line and "status=401" in line]
    assert ok and "token=reviewer role=reviewer" in ok[-1] and f"study={h.StudyInstanceUID}" in ok[-1]
    assert refused and "token=- " in refused[-1]


def test_cors_closed_by_default_open_for_configured_origins(sqlite_served: Served, tmp_path: Path) -> None:
    preflight = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"}
    closed = requests.options(sqlite_served.url + "/studies", headers=preflight, timeout=30)
    assert "access-control-allow-origin" not in closed.headers
    settings = WebSettings(port=0, access_log=tmp_path / "a.log", cors_origins=("https://viewer.example",))
    served = start_served(tmp_path, f"sqlite:///{tmp_path / 'cors.sqlite'}", settings)
    try:
        answer = requests.options(served.url + "/studies", headers=preflight, timeout=30)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://viewer.example"
        other = requests.options(
            served.url + "/studies", headers={**preflight, "Origin": "https://evil.example"}, timeout=30
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"
        got = requests.get(
            served.url + "/studies",
            headers={
                "Origin": "https://viewer.example",
                "Authorization": f"Bearer {served.tokens['reader']}",
            },
            timeout=30,
        )
        assert (
            got.status_code == 200 and got.headers["access-control-allow-origin"] == "https://viewer.example"
        )
    finally:
        served.server.stop()
        served.archive.close()


def test_request_size_limit(tmp_path: Path) -> None:
    settings = WebSettings(port=0, access_log=tmp_path / "a.log", max_request_bytes=1000)
    served = start_served(tmp_path, f"sqlite:///{tmp_path / 'limit.sqlite'}", settings)
    try:
        answer = requests.post(
            served.url + "/studies",
            data=b"x" * 5000,
            headers={
                "Authorization": f"Bearer {served.tokens['admin']}",
                "Content-Type": "multipart/related; type=application/dicom; boundary=b",
            },
            timeout=30,
        )
        assert answer.status_code == 413 and "max_request_bytes" in answer.text
    finally:
        served.server.stop()
        served.archive.close()


def test_plain_http_refused_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allow_plain_http"):
        WebSettings(host="0.0.0.0").check()
    assert WebSettings(host="0.0.0.0", allow_plain_http=True).check().host == "0.0.0.0"
    assert WebSettings(host="::1").check().host == "::1"
    with pytest.raises(ConfigError, match="both certificate and key"):
        WebSettings(certificate=tmp_path / "c.pem").check()
    with pytest.raises(ConfigError, match="root"):
        WebSettings(root="dicomweb/").check()
