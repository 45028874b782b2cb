"""Bridge settings: TOML file, flag overrides, validation, access policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.errors import ConfigError
from pacs_bridge.access import AccessPolicy
from pacs_bridge.config import BridgeSettings, CommitmentPeer, load_settings
from pacs_bridge.peers import AllowedPeer


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_file_values_and_flag_overrides(tmp_path: Path) -> None:
    (tmp_path / "s.crt").write_text("x")
    (tmp_path / "s.key").write_text("x")
    path = _write(
        tmp_path,
        """
[server]
aet = "ARCHIVE1"
port = 4242
allow = ["EDGE1", "EDGE2@127.0.0.1"]
max_pdu_bytes = 65536
poll_interval_ms = 0.5

[tls]
certificate = "s.crt"
key = "s.key"

[commitment_peers]
EDGE1 = "127.0.0.1:1104"
""",
    )
    from_file = load_settings(path)
    assert (from_file.aet, from_file.port, from_file.max_pdu_bytes) == ("ARCHIVE1", 4242, 65536)
    assert from_file.poll_interval_ms == 0.5
    assert [str(peer) for peer in from_file.allow] == ["EDGE1", "EDGE2@127.0.0.1"]
    assert from_file.tls is not None and from_file.tls.certificate == tmp_path / "s.crt"
    assert from_file.commitment_peer("EDGE1") == CommitmentPeer("EDGE1", "127.0.0.1", 1104)
    assert from_file.commitment_peer("EDGE2") is None
    overridden = load_settings(path, port=0, aet="OTHER", allow=["EDGE9"], max_pdu_bytes=0)
    assert (overridden.port, overridden.aet, overridden.max_pdu_bytes) == (0, "OTHER", 0)
    assert [peer.ae_title for peer in overridden.allow] == ["EDGE9"]
    assert overridden.tls == from_file.tls  # not overridden, kept from the file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nport = "x"', "port: expected int"),
        ("[server]\nport = 70000", "port: expected 0-65535"),
        ("[server]\ncolour = 1", "unknown keys"),
        ("[srv]\n", "unknown tables"),
        ('[server]\naet = "THIS TITLE IS TOO LONG"', "AE title"),
        ('[tls]\ncertificate = "missing.crt"\nkey = "missing.key"', "does not exist"),
        ('[commitment_peers]\nEDGE = "nohostport"', "host:port"),
        ("[server\n", "valid TOML"),
        ("[server]\npoll_interval_ms = 0", "poll_interval_ms: expected more than 0"),
        ('[server]\npoll_interval_ms = "fast"', "poll_interval_ms: expected int or float"),
    ],
)
def test_invalid_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


def test_closed_by_default() -> None:
    with pytest.raises(ConfigError, match="--allow SCANNER_AE"):
        BridgeSettings().check_access_policy()
    BridgeSettings(allow_any=True).check_access_policy()
    BridgeSettings(allow=(AllowedPeer("EDGE"),)).check_access_policy()


def test_allowed_peer_parsing_and_matching() -> None:
    anywhere = AllowedPeer.parse("EDGE1")
    bound = AllowedPeer.parse("EDGE2@127.0.0.1")
    assert anywhere.admits("EDGE1  ", "10.1.2.3")
    assert not anywhere.admits("EDGE2", "10.1.2.3")
    assert bound.admits("EDGE2", "127.0.0.1")
    assert not bound.admits("EDGE2", "127.0.0.2")
    with pytest.raises(ConfigError, match="CALLING_AE@host"):
        AllowedPeer.parse("EDGE@")
    with pytest.raises(ConfigError, match="that resolves"):
        AllowedPeer.parse("EDGE@no-such-host.invalid")


def test_access_policy_titles_for_address() -> None:
    policy = AccessPolicy((AllowedPeer.parse("A"), AllowedPeer.parse("B@127.0.0.2")), allow_any=False)
    assert policy.titles_for("127.0.0.2") == ["A", "B"]
    assert policy.titles_for("127.0.0.1") == ["A"]
    nobody = AccessPolicy((AllowedPeer.parse("B@127.0.0.2"),), allow_any=False)
    assert nobody.titles_for("127.0.0.1") == ["\\"]  # impossible title: reject everyone
    assert AccessPolicy((), allow_any=True).titles_for("127.0.0.1") == []


def test_the_limits_come_from_the_file_and_are_validated(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[server]
allow = ["EDGE1"]
associate_timeout_s = 5
max_associate_rq_bytes = 32768
max_connections_per_address = 4
max_unassociated = 32
index_busy_timeout_s = 2.5
network_timeout_s = 30
""",
    )
    settings = load_settings(path)
    assert (settings.associate_timeout_s, settings.max_associate_rq_bytes) == (5.0, 32768)
    assert (settings.max_connections_per_address, settings.max_unassociated) == (4, 32)
    assert (settings.index_busy_timeout_s, settings.network_timeout_s) == (2.5, 30.0)
    defaults = BridgeSettings()
    assert defaults.max_pdu_bytes == 4 * 1024 * 1024, "the default PDU limit bounds memory"
    assert defaults.pdu_read_limit == defaults.max_pdu_bytes
    assert BridgeSettings(max_pdu_bytes=0).pdu_read_limit == 64 * 1024 * 1024
    # 3 x 64 KiB x 64 + 16 x (3 x 4 MiB + 64 KiB)
    assert defaults.buffered_memory_bound() == 3 * 65536 * 64 + 16 * (3 * 4 * 1024 * 1024 + 65536)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("associate_timeout_s", 0, "associate_timeout_s: expected more than 0"),
        ("max_associate_rq_bytes", 100, "max_associate_rq_bytes: expected 1024 to 1048576"),
        ("max_connections_per_address", 0, "max_connections_per_address: expected at least 1"),
        ("max_unassociated", 0, "max_unassociated: expected at least 1"),
        ("index_busy_timeout_s", 120, "index_busy_timeout_s: expected more than 0 and at most 60"),
        ("network_timeout_s", 0, "network_timeout_s: expected more than 0"),
    ],
)
def test_a_limit_out_of_range_is_refused_by_name(key: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BridgeSettings(**{key: value})  # type: ignore[arg-type]
