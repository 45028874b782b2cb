"""Route matching: pure, on header facts, classification and the sender's AE title."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from archive.dicom_header import InstanceHeader
from archive.forward.config import Route
from archive.forward.routes import RouteFacts, matching_routes, route_matches
from archive.ingest import Origin
from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.rules import Classification

US_MF = "1.2.840.10008.5.1.4.1.1.3.1"
FACTS = RouteFacts(
    calling_ae="SCANNER1",
    modality="US",
    sop_class_uid=US_MF,
    levels=frozenset({"L4", "L5"}),
    side="right",
    technique="OT",
    procedure_type="medial branch block",
)


@pytest.mark.parametrize(
    ("route", "matches"),
    [
        (Route("P"), True),  # no keys: everything
        (Route("P", calling_ae=frozenset({"SCANNER1", "SCANNER2"})), True),
        (Route("P", calling_ae=frozenset({"SCANNER2"})), False),
        (Route("P", modality=frozenset({"CT"})), False),
        (Route("P", sop_class=frozenset({US_MF})), True),
        (Route("P", level=frozenset({"L5", "S1"})), True),  # any of the instance's levels
        (Route("P", level=frozenset({"L3"})), False),
        (Route("P", side=frozenset({"left"})), False),
        (Route("P", technique=frozenset({"OT", "TT"}), side=frozenset({"right"})), True),
        (Route("P", technique=frozenset({"TT"}), side=frozenset({"right"})), False),  # all keys must match
        (Route("P", procedure_type=frozenset({"epidural"})), False),
    ],
)
def test_every_key_narrows_and_lists_accept_any_value(route: Route, matches: bool) -> None:
    assert route_matches(route, FACTS) is matches


def test_a_missing_fact_matches_only_routes_without_that_key() -> None:
    imported = RouteFacts(calling_ae=None, modality="US", sop_class_uid=US_MF)
    assert route_matches(Route("P", modality=frozenset({"US"})), imported)
    assert not route_matches(Route("P", calling_ae=frozenset({"SCANNER1"})), imported)
    assert not route_matches(Route("P", level=frozenset({"L4"})), imported)
    assert not route_matches(Route("P", side=frozenset({"left"})), imported)


def test_one_route_per_destination_the_first_that_matches() -> None:
    routes = (
        Route("PACS", modality=frozenset({"CT"})),
        Route("PACS", level=frozenset({"L4"}), granularity="instance"),
        Route("BACKUP"),
        Route("PACS"),
    )
    assert matching_routes(routes, FACTS) == [(1, routes[1]), (2, routes[2])]


def test_facts_of_an_ingest_come_from_header_classification_and_origin() -> None:
    ds = Dataset()
    ds.Modality = "US"
    header = InstanceHeader(ds, "1.2.840.10008.1.2.1", US_MF, "1.2.3", "1.2", "1.2.1")
    classification = Classification(
        levels=(SpinalLevel.L4, SpinalLevel.L5),
        side=Side.RIGHT,
        technique=Technique.OT,
        procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
        provenance={},
        region="lumbar",
    )
    assert RouteFacts.of_ingest(header, classification, Origin("network", calling_ae="SCANNER1")) == FACTS
    bare = RouteFacts.of_ingest(header, None, Origin("file"))
    assert bare == RouteFacts(calling_ae=None, modality="US", sop_class_uid=US_MF)
