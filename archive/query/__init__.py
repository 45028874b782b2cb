"""Query matching for C-FIND, the Modality Worklist and QIDO-RS: one matcher, per PS3.4 C.2.2.2.

The way in::

    request = FindRequest.parse(identifier, InformationModel.STUDY_ROOT)
    for response in find(archive.engine, request, MatchSettings()):
        ...

:mod:`~archive.query.keys` maps attributes to index columns per level,
:mod:`~archive.query.matching` turns one value into a SQL condition,
:mod:`~archive.query.request` reads an identifier, :mod:`~archive.query.sql`
builds the one-row-per-entity query and :mod:`~archive.query.find` pages
through it and builds the responses.
"""

from archive.query.errors import QueryError, QueryFailure
from archive.query.find import (
    InstanceRef,
    count_matches,
    find,
    matching_ids,
    matching_instances,
    response_character_set,
)
from archive.query.keys import (
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    PROCEDURE_ELEMENTS,
    InformationModel,
    Key,
    KeyKind,
    Level,
)
from archive.query.matching import MatchSettings
from archive.query.request import FindRequest, RequestedKey

__all__ = [
    "PRIVATE_CREATOR",
    "PRIVATE_GROUP",
    "PROCEDURE_ELEMENTS",
    "FindRequest",
    "InformationModel",
    "InstanceRef",
    "Key",
    "KeyKind",
    "Level",
    "MatchSettings",
    "QueryError",
    "QueryFailure",
    "RequestedKey",
    "count_matches",
    "find",
    "matching_ids",
    "matching_instances",
    "response_character_set",
]
