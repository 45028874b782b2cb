"""``usarchive web`` as a command: token create/list/revoke; the server in a subprocess (TLS, bounds)."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from click.testing import CliRunner

from archive.cli import main
from archive.config import ENV_CONFIG
from archive.settings import ENV_DB, ENV_HOME

_ENV = {ENV_HOME: "", ENV_DB: "", ENV_CONFIG: ""}


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=_ENV)
    return result.exit_code, result.stdout, result.stderr


def _archive(tmp_path: Path, samples: Path) -> Path:
    data = tmp_path / "data"
    assert _cli("--data-dir", str(data), "init")[0] == 0
    code, _, err = _cli("--data-dir", str(data), "import", str(samples / "l4_tt_inplane_mono.dcm"))
    assert code == 0, err
    return data


def test_token_commands(tmp_path: Path, sample_dir: Path) -> None:
    data = _archive(tmp_path, sample_dir)
    code, secret, err = _cli(
        "--data-dir",
        str(data),
        "web",
        "token",
        "create",
        "--name",
        "ohif",
        "--role",
        "reviewer",
        "--expires",
        "30d",
    )
    assert code == 0, err
    assert secret.strip().startswith("usa_") and "not shown again" in err
    code, out, _ = _cli("--data-dir", str(data), "--json", "web", "token", "list")
    (listed,) = json.loads(out)["tokens"]
    assert listed["name"] == "ohif" and listed["role"] == "reviewer" and listed["state"] == "active"
    assert listed["expires_at"] is not None and secret.strip() not in out
    code, _, err = _cli("--data-dir", str(data), "web", "token", "create", "--name", "ohif")
    assert code != 0 and "exists" in err
    assert _cli("--data-dir", str(data), "web", "token", "revoke", "ohif")[0] == 0
    code, out, _ = _cli("--data-dir", str(data), "--json", "web", "token", "list")
    assert json.loads(out)["tokens"][0]["state"] == "revoked"
    code, _, err = _cli("--data-dir", str(data), "web", "token", "create", "--name", "x", "--expires", "soon")
    assert code != 0 and "--expires" in err


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "web.crt", directory / "web.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _wait_for_url(process: subprocess.Popen[str], deadline_s: float = 60.0) -> str:
    assert process.stderr is not None
    end = time.monotonic() + deadline_s
    seen = []
    while time.monotonic() < end:
        ready, _, _ = select.select([process.stderr], [], [], max(end - time.monotonic(), 0))
        if not ready:
            break
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "serving DICOMweb at " in line:
            return line.split("serving DICOMweb at ", 1)[1].strip()
    raise AssertionError(f"usarchive web did not start: {''.join(seen)}")


def test_served_over_tls_from_the_configuration(tmp_path: Path, sample_dir: Path) -> None:
    data = _archive(tmp_path, sample_dir)
    cert, key = _self_signed(tmp_path)
    (data / "usarchive.toml").write_text(
        f'[web]\ncertificate = "{cert}"\nkey = "{key}"\nroot = "/dw"\n', encoding="utf-8"
    )
    _, secret, _ = _cli("--data-dir", str(data), "web", "token", "create", "--name", "t")
    env = {**os.environ, ENV_HOME: str(data), ENV_DB: "", ENV_CONFIG: ""}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("usarchive")), "web", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _wait_for_url(process)
        assert url.startswith("https://127.0.0.1:") and url.endswith("/dw")
        answer = requests.get(
            url + "/studies",
            headers={"Authorization": f"Bearer {secret.strip()}"},
            verify=str(cert),
            timeout=30,
        )
        assert answer.status_code == 200 and len(answer.json()) == 1
    finally:
        process.terminate()
        process.wait(30)
    assert (data / "web-access.log").read_text(encoding="utf-8").count("token=t ") == 1


def test_plain_http_off_loopback_refused_at_start(tmp_path: Path, sample_dir: Path) -> None:
    data = _archive(tmp_path, sample_dir)
    (data / "usarchive.toml").write_text('[web]\nhost = "0.0.0.0"\n', encoding="utf-8")
    code, _, err = _cli("--data-dir", str(data), "web", "--port", "0")
    assert code != 0 and "usarchive.toml" in err and "allow_plain_http" in err


def test_the_command_takes_its_time_and_connection_bounds_from_the_configuration(
    tmp_path: Path, sample_dir: Path
) -> None:
    data = _archive(tmp_path, sample_dir)
    config = "[web]\nheader_timeout_s = 1\nmax_connections = 1\n"
    (data / "usarchive.toml").write_text(config, encoding="utf-8")
    env = {**os.environ, ENV_HOME: str(data), ENV_DB: "", ENV_CONFIG: ""}
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("usarchive")), "web", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(_wait_for_url(process).rsplit(":", 1)[1].split("/", 1)[0])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
            idle.sendall(b"GET /dicomweb/studies HTTP/1.1\r\n")  # half a head
            with socket.create_connection(("127.0.0.1", port), timeout=30) as second:
                assert second.recv(65536).startswith(b"HTTP/1.1 503 ")  # max_connections = 1
            started = time.monotonic()
            assert idle.recv(65536).startswith(b"HTTP/1.1 408 ")  # header_timeout_s = 1
            assert time.monotonic() - started < 1 + 5
    finally:
        process.terminate()
        process.wait(30)
