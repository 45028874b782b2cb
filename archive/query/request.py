"""A query identifier read into a :class:`FindRequest`: level, keys in order, their values.

The identifier is a pydicom ``Dataset`` (decoded with its own Specific
Character Set, as pydicom does when values are read). Each element becomes a
:class:`RequestedKey`:

* a key of :mod:`archive.query.keys` at or above the query level: matched
  and returned;
* a key below the query level: with a value, an error in a hierarchical query
  (PS3.4 C.4.1.2.2.1) and matched on the entity's descendants in a
  relational one; without a value, not returned (hierarchical) or returned
  empty;
* our private procedure keys (block :data:`~archive.query.keys.PRIVATE_CREATOR`):
  matched and returned at every level;
* any other attribute: returned (from the stored header when configured,
  else empty); with a value, refused (0xC000) rather than silently matched
  as universal, naming the attribute;
* a sequence the index keeps items of (:data:`archive.index.items.SEQUENCES`:
  Procedure Code, Referenced Study, Request Attributes): matched on its one
  item's values (PS3.4 C.2.2.2.6, :mod:`archive.query.sequences`) and
  returned from the index, like a key of its level;
* any other sequence: an empty sequence, or one item of empty attributes, is a
  return key (returned empty, or from the header); an item with values is
  refused (0xC000) naming the sequence.

Upper-level unique keys (Patient ID in a Patient Root STUDY query, the Study
Instance UID in a SERIES query) are not required: without them the query
searches all patients or studies (a superset of what PS3.4 asks of an SCU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from archive.index.items import SEQUENCES
from archive.query.errors import QueryError, QueryFailure
from archive.query.keys import (
    CONTROL_TAGS,
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    PROCEDURE_ELEMENTS,
    PROCEDURE_KEYS,
    STANDARD_KEYS,
    InformationModel,
    Key,
    KeyKind,
    Level,
)
from archive.query.sequences import SequenceQuery, parse_sequence

_PROCEDURE_BY_OFFSET = {PROCEDURE_ELEMENTS[key.keyword]: key for key in PROCEDURE_KEYS}
_TEXT_DELIMITERS = {0x5C}


@dataclass(frozen=True)
class RequestedKey:
    """One attribute of the identifier.

    Attributes
    ----------
    tag : int
        The tag as the identifier has it (a private element keeps its block).
    vr : str
        Its VR (for known keys the dictionary's, else what the identifier said).
    value : str
        The value as text (``""``: universal / return key only).
    key : Key or None
        The archive's key, or ``None`` for an attribute the index does not hold.
    matched : bool
        Whether the value takes part in matching (``False`` for a key only returned).
    returned : bool
        Whether the attribute is in the responses.
    sequence : SequenceQuery or None
        For a kept sequence (``key.kind`` ``SEQUENCE``): its item's keys.
    """

    tag: int
    vr: str
    value: str
    key: Key | None
    matched: bool = True
    returned: bool = True
    sequence: SequenceQuery | None = None


@dataclass(frozen=True)
class FindRequest:
    """A C-FIND (or QIDO / worklist) query, read and checked.

    Attributes
    ----------
    model : InformationModel
    level : Level
    keys : tuple of RequestedKey
        In the identifier's order (responses keep it).
    character_set : tuple of str
        The identifier's Specific Character Set terms (empty: default repertoire).
    private_block : int or None
        The element of our private creator in group 0x0011 (``0x10`` for
        ``(0011,0010)``) when the identifier has our block.
    relational : bool
        Keys below the level match the entity's descendants (negotiated).
    combined_datetime : bool
        Date and time ranges of one entity form one date-time range (negotiated).
    """

    model: InformationModel
    level: Level
    keys: tuple[RequestedKey, ...]
    character_set: tuple[str, ...] = ()
    private_block: int | None = None
    relational: bool = False
    combined_datetime: bool = False

    @property
    def matching(self) -> list[RequestedKey]:
        """Keys with a value that take part in matching."""
        return [rk for rk in self.keys if rk.matched and rk.value.strip() not in ("", "*")]

    @property
    def sequences(self) -> list[RequestedKey]:
        """Kept sequence keys whose item has a value to match."""
        return [rk for rk in self.keys if rk.sequence is not None and rk.matched]

    def value_of(self, keyword: str) -> str:
        """The value given for a standard key (``""`` when absent)."""
        for rk in self.keys:
            if rk.key is not None and rk.key.keyword == keyword and rk.key.kind is not KeyKind.PROCEDURE:
                return rk.value
        return ""

    @classmethod
    def parse(
        cls,
        identifier: Dataset,
        model: InformationModel,
        *,
        relational: bool = False,
        combined_datetime: bool = False,
    ) -> FindRequest:
        """Read ``identifier`` as a query of ``model``.

        Raises
        ------
        QueryError
            ``INVALID_IDENTIFIER`` without a valid Query/Retrieve Level for the
            model, for a value below the level in a hierarchical query, or an
            undecodable value; ``UNSUPPORTED_KEY`` for a value on an attribute the
            archive cannot match.
        """
        level = _level_of(identifier, model)
        charset = _character_set(identifier)
        encodings = convert_encodings(list(charset) or None)
        block = _private_block(identifier)
        keys: list[RequestedKey] = []
        for element in identifier:
            requested = _requested(element, level, encodings, block, relational=relational)
            if requested is not None:
                keys.append(requested)
        return cls(
            model,
            level,
            tuple(keys),
            charset,
            block,
            relational=relational,
            combined_datetime=combined_datetime,
        )


def _level_of(identifier: Dataset, model: InformationModel) -> Level:
    raw = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    allowed = ", ".join(level.value for level in model.levels)
    try:
        level = Level(raw)
    except ValueError:
        raise QueryError(
            QueryFailure.INVALID_IDENTIFIER,
            f"(0008,0052) Query/Retrieve Level: expected one of {allowed}, but got {raw!r}; "
            "set it in the identifier",
        ) from None
    if level not in model.levels:
        raise QueryError(
            QueryFailure.INVALID_IDENTIFIER,
            f"(0008,0052) Query/Retrieve Level {raw}: the {model.value} model has only {allowed}; "
            "use the Patient Root model for PATIENT-level queries",
        )
    return level


def _character_set(identifier: Dataset) -> tuple[str, ...]:
    value = identifier.get("SpecificCharacterSet")
    if value is None or value == "":
        return ()
    terms = list(value) if isinstance(value, (list, MultiValue)) else [str(value)]
    return tuple(str(term).strip() for term in terms)


def _private_block(identifier: Dataset) -> int | None:
    for element in range(0x10, 0x100):
        creator = identifier.get((PRIVATE_GROUP, element))
        if creator is None:
            continue
        value = creator.value
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")
        if text.strip() == PRIVATE_CREATOR:
            return element
    return None


def text_of(element: DataElement, encodings: Sequence[str]) -> str:
    """An element's value as text (values joined by backslash; bytes decoded with ``encodings``)."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return decode_bytes(value.rstrip(b"\x00 "), list(encodings), _TEXT_DELIMITERS).strip()
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(item) for item in value)
    return str(value).strip()


def _no_values(sequence: DicomSequence) -> bool:
    for item in sequence:
        for element in item:
            if element.VR == "SQ":
                if not _no_values(element.value):
                    return False
            elif element.value not in (None, "", b""):
                return False
    return True


def _unsupported(element: DataElement, why: str) -> QueryError:
    return QueryError(
        QueryFailure.UNSUPPORTED_KEY,
        f"{element.tag} {element.keyword or 'private attribute'}: {why}; leave its value empty to have "
        "it returned, or match on an indexed key (see docs/conformance.md)",
    )


def _requested(
    element: DataElement,
    level: Level,
    encodings: Sequence[str],
    block: int | None,
    *,
    relational: bool,
) -> RequestedKey | None:
    tag = int(element.tag)
    if tag in CONTROL_TAGS or element.tag.group in (0x0000, 0x0002):
        return (
            RequestedKey(tag, element.VR, "", None, matched=False)
            if tag in (0x00080054, 0x00080056)
            else None
        )
    if element.tag.is_private:
        return _private_key(element, encodings, block)
    if element.VR == "SQ":
        kept = parse_sequence(element, SEQUENCES, lambda item: _decoded(item, encodings))
        if kept is not None:
            return _sequence_key(element, kept, level, relational=relational)
        if not _no_values(element.value):
            raise _unsupported(element, "sequence matching on this attribute is not supported")
        return RequestedKey(tag, "SQ", "", None, matched=False)
    value = _decoded(element, encodings)
    key = STANDARD_KEYS.get(tag)
    if key is None:
        if value.strip() not in ("", "*"):
            raise _unsupported(element, "the archive does not index this attribute, so cannot match on it")
        return RequestedKey(tag, element.VR, "", None, matched=False)
    if key.level.depth > level.depth:
        if relational:
            return RequestedKey(tag, key.vr, value, key, returned=True)
        if value.strip() not in ("", "*"):
            raise QueryError(
                QueryFailure.INVALID_IDENTIFIER,
                f"{element.tag} {key.keyword} is a {key.level.value}-level key, but the query is at the "
                f"{level.value} level (hierarchical: no matching below the level); query at the "
                f"{key.level.value} level, or negotiate relational queries",
            )
        return RequestedKey(tag, key.vr, "", key, matched=False)
    if key.kind is KeyKind.COMPUTED and key.keyword != "ModalitiesInStudy" and value.strip() not in ("", "*"):
        raise _unsupported(element, "matching on a computed count or list is not supported")
    return RequestedKey(tag, key.vr, value, key)


def _decoded(element: DataElement, encodings: Sequence[str]) -> str:
    try:
        return text_of(element, encodings)
    except (UnicodeError, LookupError) as exc:
        raise QueryError(
            QueryFailure.INVALID_IDENTIFIER,
            f"{element.tag} {element.keyword}: value not decodable with Specific Character Set "
            f"{list(encodings)} ({exc}); fix (0008,0005) or the value",
        ) from exc


def _sequence_key(
    element: DataElement, kept: SequenceQuery, level: Level, *, relational: bool
) -> RequestedKey:
    key = Key(kept.sequence.keyword, "SQ", Level(kept.sequence.level), KeyKind.SEQUENCE)
    tag = int(element.tag)
    if key.level.depth > level.depth and not relational:
        if kept.matched:
            raise QueryError(
                QueryFailure.INVALID_IDENTIFIER,
                f"{element.tag} {key.keyword} is a {key.level.value}-level key, but the query is at the "
                f"{level.value} level (hierarchical: no matching below the level); query at the "
                f"{key.level.value} level, or negotiate relational queries",
            )
        return RequestedKey(tag, "SQ", "", key, matched=False, sequence=kept)
    return RequestedKey(tag, "SQ", "", key, matched=kept.matched, sequence=kept)


def _private_key(element: DataElement, encodings: Sequence[str], block: int | None) -> RequestedKey | None:
    tag = element.tag
    if block is None or tag.group != PRIVATE_GROUP or tag.element >> 8 != block:
        return None  # another creator's block, or a creator element: not ours to answer
    key = _PROCEDURE_BY_OFFSET.get(tag.element & 0xFF)
    if key is None:
        return None
    try:
        value = text_of(element, encodings)
    except (UnicodeError, LookupError) as exc:
        raise QueryError(
            QueryFailure.INVALID_IDENTIFIER, f"{tag} {key.keyword}: value not decodable ({exc})"
        ) from exc
    return RequestedKey(int(tag), "LO", value, key)
