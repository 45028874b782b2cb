"""[destinations.*], [forward] and [[forward.routes]]: typed, validated with file:line, shown with sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from archive.cli.main import main
from archive.config import ENV_CONFIG, ENV_DEID_SECRET, ENV_REVIEWER, load_configuration, template
from archive.errors import ConfigError
from archive.forward.config import (
    DESTINATION_KEYS,
    FORWARD_KEYS,
    ROUTE_KEYS,
    Destination,
    RetryPolicy,
    Route,
    load_forward_settings,
)
from archive.settings import ENV_DB, ENV_HOME

FULL = """\
[server]
aet = "OURS"

[destinations.PACS]
ae_title = "ORTHANC"
host = "127.0.0.1"
port = 4242
commitment = true
retry_base_s = 5
retry_multiplier = 3.0
retry_max_delay_s = 100.0
max_attempts = 4
batch_size = 7

[destinations.BACKUP]
ae_title = "BACKUP"
host = "backup.example"
port = 104
calling_ae = "ARCH2"
retry_permanent = true

[forward]
enabled = false
lease_s = 30

[[forward.routes]]
destination = "PACS"
calling_ae = ["SCANNER1"]
modality = ["us"]
level = ["l4", "L5"]
side = "left"
technique = ["tt"]
procedure_type = ["medial branch block"]
delay_s = 60

[[forward.routes]]
destination = "BACKUP"
granularity = "instance"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usarchive.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_configuration_is_typed_with_defaults_filled(tmp_path: Path) -> None:
    config = load_configuration(config_path=write(tmp_path, FULL), environ={})
    forward = config.forward
    assert config.archive.forward == forward  # ingest routes with the same settings
    assert (forward.enabled, forward.lease_s, forward.poll_s) == (False, 30.0, 2.0)
    assert forward.destinations["PACS"] == Destination(
        name="PACS",
        ae_title="ORTHANC",
        host="127.0.0.1",
        port=4242,
        calling_ae="OURS",  # [server] aet
        commitment=True,
        retry=RetryPolicy(base_s=5.0, multiplier=3.0, max_delay_s=100.0, max_attempts=4),
        batch_size=7,
    )
    backup = forward.destinations["BACKUP"]
    assert (backup.calling_ae, backup.retry.retry_permanent, backup.timeout_s) == ("ARCH2", True, 30.0)
    first, second = forward.routes
    assert first == Route(
        destination="PACS",
        calling_ae=frozenset({"SCANNER1"}),
        modality=frozenset({"US"}),
        level=frozenset({"L4", "L5"}),
        side=frozenset({"left"}),
        technique=frozenset({"TT"}),
        procedure_type=frozenset({"medial branch block"}),
        granularity="study",
        delay_s=60.0,
    )
    assert second == Route(destination="BACKUP", granularity="instance")
    assert load_forward_settings(tmp_path / "usarchive.toml") == forward


def test_no_forwarding_sections_give_no_destinations_and_no_routes(tmp_path: Path) -> None:
    forward = load_configuration(config_path=write(tmp_path, "[review]\n"), environ={}).forward
    assert (dict(forward.destinations), forward.routes, forward.enabled) == ({}, (), True)
    with pytest.raises(ConfigError, match=r"destination 'PACS': expected a name of the destination table"):
        forward.destination("PACS")


_DEST = '[destinations.P]\nae_title = "P"\nhost = "h"\nport = 104\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[destinations.P]\nae_title = "P"\nhost = "h"\nport = 0\n',
            ":4: [destinations.P] port: expected a port",
        ),
        (
            '[destinations.P]\nhost = "h"\nport = 1\n',
            ":1: [destinations.P] ae_title: expected this required key",
        ),
        (
            '[destinations.P]\nae_title = "A_TITLE_TOO_LONG_X"\nhost = "h"\nport = 1\n',
            ":2: [destinations.P] ae_title: expected an AE title",
        ),
        (
            _DEST + "retry_multiplier = 0.5\n",
            ":5: [destinations.P] retry_multiplier: expected a number of at least 1",
        ),
        (
            _DEST + "max_attempts = 0\n",
            ":5: [destinations.P] max_attempts: expected a whole number of at least 1",
        ),
        (_DEST + 'tls = "yes"\n', ":5: [destinations.P] tls: expected true or false, but got 'yes'"),
        (
            _DEST + "retry_base_s = 10\nretry_max_delay_s = 5\n",
            ":6: [destinations.P] retry_max_delay_s: expected at least",
        ),
        (_DEST + "colour = 1\n", ":5: [destinations.P] colour: unknown key; expected some of"),
        (
            _DEST + "[forward]\nlease_s = -1\n",
            ":6: [forward] lease_s: expected a number of seconds greater than 0",
        ),
        (_DEST + "[forward]\nlease = 1\n", ":6: [forward] lease: unknown key"),
        (
            _DEST + '[[forward.routes]]\ndestination = "P"\n\n[[forward.routes]]\ndestination = "Q"\n',
            ":9: [forward.routes[1]] destination: expected one of ['P'], but got 'Q'",
        ),
        (
            _DEST + '[[forward.routes]]\nmodality = ["US"]\n',
            ":5: [forward.routes[0]] destination: expected this required",
        ),
        (
            _DEST + '[[forward.routes]]\ndestination = "P"\nlevel = ["L9"]\n',
            ":7: [forward.routes[0]] level: expected known values",
        ),
        (
            _DEST + '[[forward.routes]]\ndestination = "P"\ngranularity = "series"\n',
            ":7: [forward.routes[0]] granularity: expected one of ['study', 'instance']",
        ),
        (
            _DEST + '[[forward.routes]]\ndestination = "P"\nside = [1]\n',
            ":7: [forward.routes[0]] side: expected a list",
        ),
        (
            _DEST + '[[forward.routes]]\ndestination = "P"\nlevels = ["L4"]\n',
            ":7: [forward.routes[0]] levels: unknown key",
        ),
    ],
)
def test_invalid_forwarding_values_name_the_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_configuration(config_path=path, environ={})
    assert f"{path}{message}" in str(caught.value)
    with pytest.raises(ConfigError, match="expected"):
        load_forward_settings(path)


def cli(*args: str) -> str:
    env = {ENV_HOME: "", ENV_DB: "", ENV_CONFIG: "", ENV_REVIEWER: "", ENV_DEID_SECRET: ""}
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_config_show_lists_forwarding_keys_with_their_sources(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("--data-dir", str(data), "init")
    config = data / "usarchive.toml"
    config.write_text(FULL, encoding="utf-8")
    rows = {
        line.split("\t")[1]: line.split("\t")
        for line in cli("--data-dir", str(data), "config", "show").splitlines()[1:]
    }
    assert rows["destinations.PACS.port"] == [f"{config}:7", "destinations.PACS.port", "4242"]
    assert rows["destinations.PACS.calling_ae"][0] == "default ([server] aet)"
    assert rows["destinations.PACS.timeout_s"] == ["default", "destinations.PACS.timeout_s", "30.0"]
    assert rows["forward.lease_s"] == [f"{config}:24", "forward.lease_s", "30.0"]
    assert rows["forward.poll_s"][0] == "default"
    assert rows["forward.routes[0].level"] == [f"{config}:30", "forward.routes[0].level", '["L4", "L5"]']
    assert rows["forward.routes[1].granularity"][2] == "instance"
    shown = json.loads(cli("--data-dir", str(data), "config", "show", "--json"))
    assert "destinations.BACKUP.calling_ae" in json.dumps(shown)


def test_the_init_template_uncommented_is_a_valid_forwarding_configuration(tmp_path: Path) -> None:
    lines = template(tmp_path).splitlines()
    start = lines.index("# [destinations.PACS]")
    text = "\n".join(line[2:].split("   #")[0] for line in lines[start:] if line.startswith("# "))
    forward = load_forward_settings(write(tmp_path, text))
    assert set(forward.destinations) == {"PACS"}
    assert forward.routes == (Route(destination="PACS", modality=frozenset({"US"})),)
    for key in (*DESTINATION_KEYS, *FORWARD_KEYS, *ROUTE_KEYS):
        assert f"# {key.name} = " in "\n".join(lines[start:]), key.name


def test_readme_configuration_table_names_every_forwarding_key(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for section, keys in (
        ("[destinations.NAME]", DESTINATION_KEYS),
        ("[forward]", FORWARD_KEYS),
        ("[[forward.routes]]", ROUTE_KEYS),
    ):
        rows = [line for line in table.splitlines() if line.startswith(f"| `{section} ")]
        for key in keys:
            assert any(f"`{key.name}`" in row or f"{section} {key.name}`" in row for row in rows), key.name
