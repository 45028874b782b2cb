"""Classifying a clip's level, side, technique, approach and procedure type from its attributes.

The sources of a :class:`~archive.rules.loader.RuleSet` are read in trust
order; for every field the first source that yields a value wins, and the
provenance says which source, which text or code and which rule decided, plus
what other sources said when they disagreed.

Technique (:class:`~archive.model.Technique`: TT, OT, how the L4 and L5
targets are reached) and approach (:class:`~archive.model.Approach`:
in-plane, out-of-plane, how the needle is seen) are separate fields. For
technique the most trusted source that yields TT or OT wins over one that
yields only "other"; within one source the same holds for its several matches.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import pydicom
from pydicom.dataset import Dataset

from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique, sort_levels
from archive.rules.loader import FIELDS, Rule, RuleSet, Source, default_rules

logger = logging.getLogger(__name__)

#: Source name used by :func:`classify_text`; a rule restricted to sources
#: applies to free text only if it lists this name.
TEXT_SOURCE = "text"
_REGION_OF_LETTER = {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}

FieldValue = tuple[SpinalLevel, ...] | str

#: Technique values that name the procedure technique; they beat "other"
#: whatever the trust order.
PROCEDURE_TECHNIQUES = frozenset({Technique.TT.value, Technique.OT.value})

#: Conclusions a RuleSet remembers before it starts afresh.
MAX_CONCLUSIONS = 1024


@dataclass(frozen=True)
class Classification:
    """What the rules concluded about one clip.

    Attributes
    ----------
    levels : tuple of SpinalLevel
        Anatomical order, no repeats: "L4/5" gives (L4, L5), "L3-L5" gives
        (L3, L4, L5); empty when nothing matched.
    side : Side or None
    technique : Technique
        ``Technique.UNKNOWN`` when nothing matched.
    approach : Approach
        ``Approach.UNKNOWN`` when nothing matched.
    procedure_type : ProcedureType or None
    provenance : dict of str to str
        For each field that has a value ("levels", "side", "technique",
        "approach", "procedure_type", "region"): which source, text and rule
        gave it.
    region : str or None
        "cervical", "thoracic", "lumbar" or "sacral".
    approach : Approach
    sources : dict of str to str
        The source recorded in the index for a field (e.g. ``"worklist:12"``,
        :mod:`archive.worklist.classify`); a field not listed is the rules'
        (``"rule"``).
    """

    levels: tuple[SpinalLevel, ...]
    side: Side | None
    technique: Technique
    procedure_type: ProcedureType | None
    provenance: dict[str, str]
    region: str | None
    approach: Approach = Approach.UNKNOWN
    sources: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class _Item:
    """One text value or one code found at a source."""

    description: str
    text: str
    code: str | None


@dataclass(frozen=True)
class _Finding:
    """The value one source yields for one field, with its evidence."""

    source: Source
    value: FieldValue
    evidence: str


#: What an instance outside the rules' modalities is classified as.
NOTHING = Classification(
    levels=(), side=None, technique=Technique.UNKNOWN, procedure_type=None, provenance={}, region=None
)


def in_scope(ds: Dataset, rules: RuleSet, study_modalities: Iterable[str] = ()) -> bool:
    """Whether the rules apply to ``ds``: its modality is one of theirs, or its study has one.

    Parameters
    ----------
    ds : pydicom.Dataset
        The instance; an instance without a Modality (0008,0060) is in scope.
    rules : RuleSet
        Their ``modalities`` (empty: every modality).
    study_modalities : iterable of str
        Modalities of the instance's study known elsewhere (the index);
        Modalities in Study (0008,0061) of ``ds`` is read as well.
    """
    if not rules.modalities:
        return True
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if not modality or modality in rules.modalities:
        return True
    in_study = ds.get("ModalitiesInStudy", None)
    listed = in_study if isinstance(in_study, pydicom.multival.MultiValue) else [in_study or ""]
    study = {str(m).strip().upper() for m in (*listed, *study_modalities)}
    return not study.isdisjoint(rules.modalities)


def classify(
    ds: Dataset, rules: RuleSet | None = None, *, study_modalities: Iterable[str] = ()
) -> Classification:
    """Classify a dataset by the attributes the rules name, in trust order.

    Parameters
    ----------
    ds : pydicom.Dataset
        Any dataset; missing attributes are skipped.
    rules : RuleSet or None
        ``None`` uses the shipped defaults (loaded once).
    study_modalities : iterable of str
        Modalities of the other instances of its study (see :func:`in_scope`).

    Returns
    -------
    Classification
        Nothing (no levels, side, technique or procedure type) for an instance
        outside the rules' modalities, e.g. an MR protocol "t1_vibe_fs_tra_bh_dyn".
    """
    ruleset = rules if rules is not None else default_rules()
    if not in_scope(ds, ruleset, study_modalities):
        return replace(NOTHING, provenance={})
    per_source = tuple((source, tuple(_items_at(ds, source.path, source))) for source in ruleset.sources)
    with ruleset.conclusions_lock:
        concluded = ruleset.conclusions.get(per_source)
    if concluded is None:
        concluded = _conclude(per_source, ruleset)  # outside the lock: threads conclude in parallel
        with ruleset.conclusions_lock:
            if len(ruleset.conclusions) >= MAX_CONCLUSIONS:
                ruleset.conclusions.clear()
            ruleset.conclusions[per_source] = concluded
    # Each caller gets its own provenance dict; the memo's stays as concluded.
    return replace(concluded, provenance=dict(concluded.provenance))


def classify_text(text: str, rules: RuleSet | None = None) -> Classification:
    """Classify one free-text string, e.g. a series description.

    Parameters
    ----------
    text : str
        Operator text such as ``"L4/5 MBB R"`` or ``"腰椎 L5 右 一针两点"``.
    rules : RuleSet or None
        ``None`` uses the shipped defaults.

    Returns
    -------
    Classification
        Provenance entries name the source ``"text"``.
    """
    ruleset = rules if rules is not None else default_rules()
    source = Source(name=TEXT_SOURCE, path=(), rank=0, fields=frozenset(FIELDS), tag="")
    item = _Item(description=f"text '{text.strip()}'", text=_normalise(text), code=None)
    return _conclude([(source, [item])], ruleset)


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _tag_of(element: pydicom.DataElement) -> str:
    return f"({element.tag.group:04X},{element.tag.element:04X})"


def _items_at(ds: Dataset, path: Sequence[str], source: Source, prefix: str = "") -> Iterator[_Item]:
    """Every text value or code item at ``path`` below ``ds``."""
    keyword, rest = path[0], path[1:]
    if keyword not in ds:
        return
    element = ds[keyword]
    label = f"{prefix}{keyword}"
    if element.VR == "SQ":
        for item in element.value or []:
            if rest:
                yield from _items_at(item, rest, source, f"{label} > ")
            else:
                yield from _code_items(item, f"{label} {_tag_of(element)}")
        return
    if rest or element.value is None:
        return
    values = element.value if isinstance(element.value, pydicom.multival.MultiValue) else [element.value]
    text = " ".join(str(v) for v in values).strip()
    if text:
        yield _Item(description=f"{label} {_tag_of(element)} '{text}'", text=_normalise(text), code=None)


def _code_items(item: Dataset, label: str) -> Iterator[_Item]:
    """A code sequence item as a code (plus its meaning as text), then its modifiers."""
    value = str(item.get("CodeValue", "") or "").strip()
    scheme = str(item.get("CodingSchemeDesignator", "") or "").strip().upper()
    meaning = str(item.get("CodeMeaning", "") or "").strip()
    if value or meaning:
        yield _Item(
            description=f"{label} code ({scheme}, {value}, '{meaning}')",
            text=_normalise(meaning),
            code=f"{scheme}:{value}" if value and scheme else None,
        )
    for element in item:
        if element.VR == "SQ" and element.keyword.endswith("ModifierSequence"):
            for modifier in element.value or []:
                yield from _code_items(modifier, f"{label} > {element.keyword} {_tag_of(element)}")


def _conclude(per_source: Sequence[tuple[Source, Sequence[_Item]]], ruleset: RuleSet) -> Classification:
    findings: dict[str, list[_Finding]] = {field: [] for field in FIELDS}
    for source, items in per_source:
        if not items:
            continue
        for field in FIELDS:
            if field not in source.fields:
                continue
            finding = _find(field, source, items, ruleset.rules.get(field, ()))
            if finding is not None:
                findings[field].append(finding)

    provenance: dict[str, str] = {}
    chosen: dict[str, FieldValue] = {}
    for field in FIELDS:
        if not findings[field]:
            continue
        winner = _winner(field, findings[field])
        chosen[field] = winner.value
        dissent = [
            f"{o.source.name} said {_show(o.value)}"
            for o in findings[field]
            if o is not winner and o.value != winner.value
        ]
        note = f" ({'; '.join(dissent)})" if dissent else ""
        provenance[field] = f"{winner.evidence} in {ruleset.origin}{note}"

    levels = chosen.get("levels", ())
    assert isinstance(levels, tuple)
    scalar = {field: value for field, value in chosen.items() if isinstance(value, str)}
    region = scalar.get("region")
    if region is None and levels:
        region = _region_of(levels)
        if region is not None:
            provenance["region"] = f"derived from levels {_show(levels)}"
    return Classification(
        levels=levels,
        side=Side(scalar["side"]) if "side" in scalar else None,
        technique=Technique(scalar["technique"]) if "technique" in scalar else Technique.UNKNOWN,
        procedure_type=ProcedureType(scalar["procedure_type"]) if "procedure_type" in scalar else None,
        provenance=provenance,
        region=region,
        approach=Approach(scalar["approach"]) if "approach" in scalar else Approach.UNKNOWN,
    )


def _winner(field: str, findings: Sequence[_Finding]) -> _Finding:
    """The finding that decides a field: the most trusted (for technique, the most trusted TT or OT)."""
    if field == "technique":
        for finding in findings:
            if finding.value in PROCEDURE_TECHNIQUES:
                return finding
    return findings[0]


def _find(field: str, source: Source, items: Sequence[_Item], rules: Sequence[Rule]) -> _Finding | None:
    """What one source says about one field, combined over its items and matches."""
    # (rule position, value, rule name, item description) of every match
    hits: list[tuple[int, FieldValue, str, str]] = []
    for position, rule in enumerate(rules):
        if rule.sources is not None and source.name not in rule.sources:
            continue
        for item in items:
            if item.code is not None and item.code in rule.codes:
                found: FieldValue | None = rule.levels if field == "levels" else rule.value
                if found:
                    hits.append((position, found, rule.name, item.description))
            if rule.regex is None or not item.text:
                continue
            for match in rule.regex.finditer(item.text):
                found = _levels_of(rule, match) if field == "levels" else rule.value
                if found:
                    hits.append((position, found, rule.name, item.description))
    if not hits:
        return None
    value: FieldValue
    if field == "levels":
        value = sort_levels([lv for hit in hits if isinstance(hit[1], tuple) for lv in hit[1]])
        used = hits
    elif field == "side":
        sides = {str(hit[1]) for hit in hits}
        both = {Side.LEFT.value, Side.RIGHT.value} <= sides
        value = Side.BILATERAL.value if both or Side.BILATERAL.value in sides else sides.pop()
        used = hits
    else:
        candidates = hits
        if field == "technique":
            candidates = [hit for hit in hits if hit[1] in PROCEDURE_TECHNIQUES] or hits
        best = min(candidates, key=lambda hit: hit[0])
        value = best[1]
        used = [hit for hit in hits if hit[1] == value]
    names = list(dict.fromkeys(hit[2] for hit in used))
    evidence = " + ".join(dict.fromkeys(hit[3] for hit in used))
    word = "rule" if len(names) == 1 else "rules"
    return _Finding(source=source, value=value, evidence=f"{evidence} by {word} {', '.join(names)}")


def _levels_of(rule: Rule, match: re.Match[str]) -> tuple[SpinalLevel, ...]:
    """The levels one pattern match names; empty for numbers that are no level."""
    if rule.levels:
        return rule.levels
    groups = match.groupdict()
    region = (groups.get("region") or rule.level_region or "").upper()
    first = _level(region, groups["first"])
    last_text = groups.get("last")
    if first is None:
        return ()
    if not last_text:
        return (first,)
    last = _level((groups.get("last_region") or region).upper(), last_text)
    if last is None:
        return ()
    if last.ordinal < first.ordinal:
        # "C5-2" or "L12-5" are transducer names, not level ranges
        logger.debug("rule %s: %r runs upward, not read as levels", rule.name, match.group(0))
        return ()
    return SpinalLevel.span(first, last)


def _level(region: str, number: str) -> SpinalLevel | None:
    try:
        return SpinalLevel(f"{region}{int(number)}")
    except ValueError:
        logger.debug("%s%s is not a spinal level; ignored", region, number)
        return None


def _region_of(levels: tuple[SpinalLevel, ...]) -> str | None:
    letters = {level.region for level in levels}
    if letters == {"L", "S"}:
        return _REGION_OF_LETTER["L"]
    if len(letters) == 1:
        return _REGION_OF_LETTER[letters.pop()]
    return None


def _show(value: FieldValue) -> str:
    if isinstance(value, tuple):
        return ", ".join(level.value for level in value)
    return value
