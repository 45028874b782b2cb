"""The OHIF setup (pin, integrity, extraction), the generated app-config.js and the routes beside DICOMweb."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from archive.errors import ConfigError
from archive.web.ohif import QIDO_CAPABILITIES, TOKEN_KEY, app_config_js, with_viewer
from archive.web.ohif_install import (
    MARKER,
    OhifPin,
    ViewerSetupError,
    install,
    installed_dist,
    load_pin,
    sri_sha512,
)
from archive.web.settings import WebSettings

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ohif_served import ViewerServer, viewer_server  # noqa: E402


def _tarball(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tar.addfile(link)
    return path


def _pin_for(tarball: Path) -> OhifPin:
    return OhifPin("@ohif/app", "9.9.9", sri_sha512(tarball))


VIEWER = {
    "package/package.json": b"{}",
    "package/README.md": b"readme",
    "package/dist/index.html": b"<html>viewer</html>",
    "package/dist/app.bundle.js": b"console.log(1)",
}


def test_the_pin_is_an_exact_version_with_a_sha512() -> None:
    pin = load_pin()
    assert pin.package == "@ohif/app"
    assert pin.version.count(".") == 2 and all(part.isdigit() for part in pin.version.split("."))
    assert pin.integrity.startswith("sha512-") and len(pin.integrity) == len("sha512-") + 88


def test_sri_digest_is_npms_form(tmp_path: Path) -> None:
    import base64
    import hashlib

    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert sri_sha512(path) == "sha512-" + base64.b64encode(hashlib.sha512(b"abc").digest()).decode()


def test_install_extracts_dist_only_and_marks_it(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "app.tgz", VIEWER, symlink="package/dist/passwd")
    pin = _pin_for(tarball)
    dist = install(pin, tmp_path / "cache", tarball=tarball)
    assert sorted(p.name for p in dist.iterdir()) == ["app.bundle.js", "index.html"]  # no link, no README
    assert (dist / "index.html").read_bytes() == b"<html>viewer</html>"
    assert (dist.parent / MARKER).read_text().strip() == pin.integrity
    assert installed_dist(pin, tmp_path / "cache") == dist
    # installed: a second setup does not even look at a tarball
    assert install(pin, tmp_path / "cache", tarball=tmp_path / "absent.tgz") == dist


def test_a_tarball_with_another_digest_is_refused_and_nothing_installed(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "app.tgz", VIEWER)
    pin = OhifPin("@ohif/app", "9.9.9", "sha512-" + "A" * 86 + "==")
    with pytest.raises(ViewerSetupError, match="expected the integrity pinned") as caught:
        install(pin, tmp_path / "cache", tarball=tarball)
    assert sri_sha512(tarball) in str(caught.value)
    assert not (tmp_path / "cache" / "ohif-app-9.9.9").exists()
    with pytest.raises(ViewerSetupError, match=r"scripts/ohif-setup\.sh"):
        installed_dist(pin, tmp_path / "cache")


def test_a_package_without_dist_is_refused(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "app.tgz", {"package/package.json": b"{}", "package/src/index.js": b"x"})
    with pytest.raises(ViewerSetupError, match=r"under package/dist/, but the tarball has none"):
        install(_pin_for(tarball), tmp_path / "cache", tarball=tarball)
    assert not (tmp_path / "cache" / "ohif-app-9.9.9").exists()


def test_a_member_escaping_the_target_is_refused(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "app.tgz", {**VIEWER, "package/dist/../../../escaped": b"x"})
    with pytest.raises(ViewerSetupError, match="refused to extract"):
        install(_pin_for(tarball), tmp_path / "cache", tarball=tarball)
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "cache" / "ohif-app-9.9.9").exists()


def test_an_install_verified_against_another_pin_is_not_used(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "app.tgz", VIEWER)
    pin = _pin_for(tarball)
    install(pin, tmp_path / "cache", tarball=tarball)
    other = OhifPin(pin.package, pin.version, "sha512-" + "B" * 86 + "==")
    with pytest.raises(ViewerSetupError, match="verified install"):
        installed_dist(other, tmp_path / "cache")


# --- app-config.js, evaluated by node as the browser would ---------------------------------------

_EVALUATE = """
const fs = require('fs');
const stored = JSON.parse(process.argv[1]);
global.window = {
  location: {
    origin: 'http://127.0.0.1:4321', pathname: '/ohif/viewer', search: '?x=1', assign(u) { this.to = u; },
  },
  sessionStorage: { getItem: (k) => (k in stored ? stored[k] : null) },
};
eval(fs.readFileSync(0, 'utf8'));
let installed = null;
const services = { userAuthenticationService: { setServiceImplementation: (i) => { installed = i; } } };
const config = window.config({ servicesManager: { services } });
const source = config.dataSources[0].configuration;
source.onConfiguration(source, {});
config.httpErrorHandler({ status: 401 });
console.log(JSON.stringify({
  config, header: installed ? installed.getAuthorizationHeader() : null, redirected: window.location.to,
}));
"""


def _evaluate(stored: dict[str, str]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node: not found; install Debian's nodejs (`bash scripts/system-deps.sh`)")
    done = subprocess.run(
        [node, "-e", _EVALUATE, json.dumps(stored)],
        input=app_config_js("/dicomweb"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_app_config_points_ohif_at_our_dicomweb_root_with_our_flags() -> None:
    result = _evaluate({TOKEN_KEY: "usa_secret"})
    config = result["config"]
    assert config["routerBasename"] == "/ohif"
    assert config["defaultDataSourceName"] == "usarchive"
    (source,) = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    conf = source["configuration"]
    for key in ("qidoRoot", "wadoRoot", "wadoUriRoot"):
        assert conf[key] == "http://127.0.0.1:4321/dicomweb"
    assert conf["qidoSupportsIncludeField"] is QIDO_CAPABILITIES.include_field
    assert conf["supportsFuzzyMatching"] is QIDO_CAPABILITIES.supports_fuzzy_matching
    assert conf["supportsWildcard"] is QIDO_CAPABILITIES.supports_wildcard
    assert result["header"] == {"Authorization": "Bearer usa_secret"}
    assert result["redirected"] == "/?next=" + "%2Fohif%2Fviewer%3Fx%3D1"


def test_app_config_without_a_token_sets_no_header_and_holds_no_secret() -> None:
    assert _evaluate({})["header"] is None
    assert "Bearer usa_" not in app_config_js("/dicomweb")


def test_the_viewer_needs_its_own_dicomweb_root(tmp_path: Path) -> None:
    from starlette.applications import Starlette

    with pytest.raises(ConfigError, match="root"):
        with_viewer(Starlette(), WebSettings(root=""), tmp_path, audit_report=None)


# --- the routes beside DICOMweb, and the QIDO flags against the live server -----------------------


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    directory = tmp_path_factory.mktemp("ohif-routes")
    dist = directory / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html>stand-in viewer</html>")
    (dist / "app.bundle.js").write_text("console.log('bundle')")
    report = directory / "audit.html"
    report.write_text("<html>audit of the archive</html>")
    with viewer_server(directory, audit_report=report, dist=dist) as running:
        yield running


def _get(served: ViewerServer, path: str, role: str | None = None, **params: str) -> requests.Response:
    headers = {} if role is None else {"Authorization": f"Bearer {served.tokens[role]}"}
    return requests.get(served.origin + path, headers=headers, params=params, timeout=30)


def test_viewer_files_and_landing_shell_need_no_token_but_dicomweb_does(stand_in: ViewerServer) -> None:
    assert _get(stand_in, "/ohif/viewer", StudyInstanceUIDs="1.2").text == "<html>stand-in viewer</html>"
    assert _get(stand_in, "/ohif").text == "<html>stand-in viewer</html>"
    assert _get(stand_in, "/app.bundle.js").text == "console.log('bundle')"
    config = _get(stand_in, "/app-config.js")
    assert config.headers["content-type"].startswith("text/javascript")
    assert "window.config = function" in config.text
    landing = _get(stand_in, "/")
    assert 'const ROOT = "/dicomweb"' in landing.text and "PHANTOM" not in landing.text
    missing = _get(stand_in, "/nothing.js")
    assert missing.status_code == 404 and "/ohif/" in missing.text
    assert _get(stand_in, "/dicomweb/studies").status_code == 401
    assert _get(stand_in, "/dicomweb/usarchive/overview").status_code == 401


def test_overview_shows_review_status_only_to_reviewers(stand_in: ViewerServer) -> None:
    reader = _get(stand_in, "/dicomweb/usarchive/overview", "reader").json()
    reviewer = _get(stand_in, "/dicomweb/usarchive/overview", "reviewer").json()
    clips = [clip for study in reader["studies"] for clip in study["clips"]]
    assert len(clips) == len(stand_in.samples)
    assert all(clip["reviews"] is None for clip in clips)
    assert all(clip["reviews"] == {} for study in reviewer["studies"] for clip in study["clips"])
    rows = {row.sop_instance_uid: row for row in stand_in.archive.index.find(_everything())}
    for clip in clips:
        row = rows[clip["sop_instance_uid"]]
        assert (clip["levels"], clip["side"], clip["technique"], clip["approach"]) == (
            list(row.levels),
            row.side,
            row.technique,
            row.approach,
        )
    assert reader["audit_report"] is True


def test_audit_report_is_served_to_reviewers(stand_in: ViewerServer) -> None:
    assert _get(stand_in, "/dicomweb/usarchive/audit-report", "reader").status_code == 403
    report = _get(stand_in, "/dicomweb/usarchive/audit-report", "reviewer")
    assert report.status_code == 200 and report.text == "<html>audit of the archive</html>"


@pytest.mark.parametrize(
    ("flag", "params", "matches"),
    [
        (
            "supports_fuzzy_matching",
            {"PatientName": "phantom^al", "fuzzymatching": "true"},
            {"PHANTOM^ALPHA"},
        ),
        ("supports_wildcard", {"PatientName": "PHANTOM^?RAV*"}, {"PHANTOM^BRAVO"}),
    ],
)
def test_qido_does_what_the_ohif_flags_claim(
    stand_in: ViewerServer, flag: str, params: dict[str, str], matches: set[str]
) -> None:
    assert getattr(QIDO_CAPABILITIES, flag) is True
    found = _get(stand_in, "/dicomweb/studies", "reader", **params).json()
    assert {study["00100010"]["Value"][0]["Alphabetic"] for study in found} == matches


def test_qido_includefield_returns_the_fields_ohif_asks_for(stand_in: ViewerServer) -> None:
    assert QIDO_CAPABILITIES.include_field is True
    found = _get(stand_in, "/dicomweb/studies", "reader", includefield="00081030,00080060").json()
    assert found and all("00081030" in study for study in found)


def _everything() -> Any:
    from archive.index.queries import Query

    return Query(limit=1000)
