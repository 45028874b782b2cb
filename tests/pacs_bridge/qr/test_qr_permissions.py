"""Permissions per calling AE ([server.permissions], [server.move_destinations]) and extended negotiation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_context
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from qr_samples import Samples

from archive.errors import ConfigError
from pacs_bridge.access import AccessPolicy, contexts_for, required_permission
from pacs_bridge.config import BridgeSettings, settings_from_mapping
from pacs_bridge.contexts import StudyRootFind, supported_contexts
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer


def _settings(server: dict[str, object]) -> BridgeSettings:
    return settings_from_mapping({"server": server}, base_dir=Path.cwd())


def test_permissions_table_is_parsed_and_united_with_the_allow_list() -> None:
    settings = _settings(
        {
            "allow": ["SCANNER"],
            "permissions": {"WS": ["echo", "FIND", "move"], "SCANNER": ["find"], "*": ["echo"]},
            "move_destinations": {"WS": ["WS", "VIEWER"]},
        }
    )
    assert settings.permissions_of("WS", "127.0.0.1") == {Permission.ECHO, Permission.FIND, Permission.MOVE}
    assert settings.permissions_of("SCANNER", "127.0.0.1") == {
        Permission.ECHO,
        Permission.STORE,
        Permission.FIND,
    }
    assert settings.permissions_of("OTHER", "127.0.0.1") == {Permission.ECHO}
    assert settings.move_destinations_of("WS") == ("WS", "VIEWER")
    assert settings.move_destinations_of("SCANNER") is None
    settings.check_access_policy()  # the permission table alone is enough to start


def test_default_is_echo_and_store_only() -> None:
    settings = _settings({"allow": ["SCANNER"]})
    assert settings.permissions_of("SCANNER", "127.0.0.1") == {Permission.ECHO, Permission.STORE}
    assert settings.permissions_of("OTHER", "127.0.0.1") == frozenset()


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"permissions": {"WS": ["look"]}}, "expected permissions among"),
        ({"permissions": {"WS": "find"}}, "expected a list of permissions"),
        ({"permissions": {"W\\S": ["find"]}}, "AE title"),
        ({"move_destinations": {"WS": "VIEWER"}}, "expected a list of destination AE titles"),
        ({"find_max_results": 0}, "find_max_results: expected 1 to 1000000"),
        ({"find_pn_case_sensitive": "yes"}, "expected bool"),
    ],
)
def test_bad_permission_settings_say_what_was_expected(server: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(server)


def test_policy_admits_permission_peers_and_contexts_follow_rights() -> None:
    finder = PeerPermissions(AllowedPeer("WS"), frozenset({Permission.FIND}))
    policy = AccessPolicy((AllowedPeer("SCANNER"),), allow_any=False, permissions=(finder,))
    assert policy.admits("WS", "127.0.0.1") and policy.admits("SCANNER", "127.0.0.1")
    assert not policy.admits("OTHER", "127.0.0.1")
    assert policy.titles_for("127.0.0.1") == ["SCANNER", "WS"]
    contexts = supported_contexts()
    find_only = contexts_for(contexts, frozenset({Permission.FIND}))
    assert {str(cx.abstract_syntax) for cx in find_only} == {
        "1.2.840.10008.5.1.4.1.2.1.1",
        "1.2.840.10008.5.1.4.1.2.2.1",
    }
    store = contexts_for(contexts, frozenset({Permission.ECHO, Permission.STORE}))
    assert all(required_permission(str(cx.abstract_syntax)) is not Permission.FIND for cx in store)
    assert len(store) == len(contexts) - 4  # all but Q/R FIND (2), MWL FIND and MPPS


def _query(port: int, identifier: Dataset, flags: bytes | None) -> tuple[list[Dataset], bytes, int]:
    """Study Root C-FIND with pynetdicom as the SCU, proposing extended negotiation ``flags``."""
    ae = AE(ae_title="WS")
    ae.requested_contexts = [build_context(StudyRootFind)]
    ext: list[SOPClassExtendedNegotiation] = []
    if flags is not None:
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = StudyRootFind
        item.service_class_application_information = flags
        ext.append(item)
    assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE", ext_neg=ext)  # type: ignore[arg-type]
    assert assoc.is_established
    accepted = assoc.acceptor.sop_class_extended.get(StudyRootFind, b"")
    found: list[Dataset] = []
    final = -1
    for status, ds in assoc.send_c_find(identifier, StudyRootFind):
        if status.Status in (0xFF00, 0xFF01) and ds is not None:
            found.append(ds)
        else:
            final = int(status.Status)
    assoc.release()
    return found, bytes(accepted), final


def test_relational_and_combined_date_time_when_negotiated(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings, samples: Samples
) -> None:
    finder = PeerPermissions(AllowedPeer("WS"), frozenset({Permission.FIND}))
    server = start_bridge(bridge_settings, permissions=(finder,))
    by_uid = {uid: letter for letter, uid in samples.studies.items()}
    relational = Dataset()
    relational.QueryRetrieveLevel = "STUDY"
    relational.StudyInstanceUID = ""
    relational.Modality = "OT"  # a SERIES key at the STUDY level
    found, accepted, _ = _query(server.port, relational, bytes([1, 1, 1, 1]))
    assert accepted == bytes([1, 1, 0, 0])  # relational and combined accepted; fuzzy and timezone not
    assert [by_uid[str(ds.StudyInstanceUID)] for ds in found] == ["E"]
    hierarchical, accepted, final = _query(server.port, relational, None)
    assert (accepted, hierarchical, final) == (b"", [], 0xA900)  # refused without relational queries
    combined = Dataset()
    combined.QueryRetrieveLevel = "STUDY"
    combined.StudyInstanceUID = ""
    combined.StudyDate = "20240310-20240401"
    combined.StudyTime = "2200-0100"
    found, _, final = _query(server.port, combined, bytes([0, 1]))
    assert final == 0x0000
    assert sorted(by_uid[str(ds.StudyInstanceUID)] for ds in found) == ["B", "C"]
    separate, _, _ = _query(server.port, combined, None)
    assert separate == []
