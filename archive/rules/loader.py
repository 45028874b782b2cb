"""Reading and checking classification rule files (TOML).

A rule file declares the DICOM attributes to read, in order of trust, and per
field (levels, side, technique, approach, procedure_type, region) a list of named rules:
a regular expression, a list of literal tokens or a list of codes, each giving
a value. The format is described in ``docs/rules.md``; the shipped defaults are
``archive/rules/default.toml``.

Everything is validated and every regular expression compiled once, here, so
classifying a dataset never meets a bad rule.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword

from archive.errors import ConfigError
from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique

#: The fields a rule can set, in the order they are reported.
FIELDS: tuple[str, ...] = ("levels", "side", "technique", "approach", "procedure_type", "region")
#: Values of the ``region`` field.
REGIONS: tuple[str, ...] = ("cervical", "thoracic", "lumbar", "sacral")
#: Name used in provenance for the shipped rules.
DEFAULT_ORIGIN = "default rules"

_FORMAT_VERSION = 1
_SOURCE_KEYS = frozenset({"name", "path", "rank", "fields"})
_RULE_KEYS = frozenset({"name", "pattern", "tokens", "codes", "value", "sources", "region"})
_TOP_KEYS = frozenset({"version", "extends", "sources", "rules", "disable", "modalities"})
#: Modalities the rules apply to when a rule file names none.
DEFAULT_MODALITIES: frozenset[str] = frozenset({"US"})
_LEVEL_REGIONS = frozenset({"C", "T", "L", "S"})
# Whitespace, hyphens and underscores inside a token match any run of them.
_TOKEN_GAP = re.compile(r"[\s_\-]+")


@dataclass(frozen=True)
class Source:
    """One place in a dataset a value may come from.

    Attributes
    ----------
    name : str
        Name used in provenance and in a rule's ``sources`` restriction.
    path : tuple of str
        Attribute keywords from the dataset root; every keyword but the last
        is a sequence whose items are all searched, e.g.
        ``("RequestAttributesSequence", "RequestedProcedureDescription")``.
        A last keyword naming a sequence is read as coded items.
    rank : int
        Trust: lower is more trusted (the defaults use 1..18). Equal ranks
        keep file order.
    fields : frozenset of str
        Fields this source may set.
    tag : str
        DICOM tag of the last keyword, e.g. ``"(0008,103E)"``.
    """

    name: str
    path: tuple[str, ...]
    rank: int
    fields: frozenset[str]
    tag: str


@dataclass(frozen=True)
class Rule:
    """One named rule of one field.

    Attributes
    ----------
    name : str
        Unique within its field; named in provenance.
    field : str
        One of :data:`FIELDS`.
    regex : re.Pattern or None
        Compiled (case-insensitive) pattern or token alternation; ``None`` for
        a rule with codes only.
    codes : frozenset of str
        ``"SCHEME:VALUE"`` codes this rule recognises, e.g. ``"SCT:11994002"``.
    value : str or None
        Canonical value (``Side``/``Technique``/``ProcedureType`` value or a
        region); ``None`` for level rules.
    levels : tuple of SpinalLevel
        Fixed levels of a level rule; empty when taken from the pattern's groups.
    level_region : str or None
        Region letter for level patterns without a ``region`` group.
    sources : frozenset of str or None
        Source names this rule is restricted to; ``None`` for all.
    """

    name: str
    field: str
    regex: re.Pattern[str] | None
    codes: frozenset[str]
    value: str | None
    levels: tuple[SpinalLevel, ...]
    level_region: str | None
    sources: frozenset[str] | None


@dataclass(frozen=True)
class RuleSet:
    """Validated, compiled classification rules.

    Attributes
    ----------
    sources : tuple of Source
        Sorted by rank, most trusted first.
    rules : mapping of str to tuple of Rule
        Per field, in precedence order.
    origin : str
        Where the rules came from, for provenance: ``"default rules"`` or
        ``"rules file /path/site.toml"``.
    modalities : frozenset of str
        Modality (0008,0060) values the rules apply to (default ``{"US"}``);
        an instance of another modality is classified only when its study has
        one of these (see :func:`archive.rules.engine.classify`). Empty means
        every modality.
    conclusions : dict
        What :func:`archive.rules.engine.classify` concluded from each distinct
        set of values it was given (the instances of one series usually share
        them), so it matches the rules once per set, not once per instance.
        Read and written only under ``conclusions_lock`` (receiver threads share a rule set).
    """

    sources: tuple[Source, ...]
    rules: Mapping[str, tuple[Rule, ...]]
    origin: str
    modalities: frozenset[str] = DEFAULT_MODALITIES
    conclusions: dict[Any, Any] = dataclasses.field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    conclusions_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, compare=False, repr=False
    )


def load_rules(path: Path | None = None) -> RuleSet:
    """Load classification rules from a TOML file, or the shipped defaults.

    Parameters
    ----------
    path : Path or None
        A rule file (format in ``docs/rules.md``). ``None`` loads the shipped
        defaults. A file with ``extends = "default"`` starts from the defaults:
        its sources and rules replace those of the same name, new rules take
        precedence over the defaults, and ``disable = ["field.rule-name"]``
        removes default rules.

    Returns
    -------
    RuleSet

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or a source or rule is invalid
        (unknown keyword, field or value, bad regular expression, duplicate
        name); the message names the file, the rule and the problem.
    """
    if path is None:
        return _parse(_default_document(), DEFAULT_ORIGIN, base=None)
    origin = f"rules file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read it ({exc}); check the path and permissions") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML ({exc}); fix the syntax") from exc
    extends = document.get("extends")
    if extends is None:
        return _parse(document, origin, base=None)
    if extends != "default":
        raise ConfigError(
            f"{origin}: 'extends' must be \"default\", but got {extends!r}; "
            "remove it to write a complete rule set"
        )
    return _parse(document, origin, base=default_rules())


@functools.cache
def default_rules() -> RuleSet:
    """The shipped rules, loaded and compiled once per process."""
    return load_rules(None)


def _default_document() -> dict[str, Any]:
    text = resources.files("archive.rules").joinpath("default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _parse(document: dict[str, Any], origin: str, base: RuleSet | None) -> RuleSet:
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{origin}: unknown top-level key(s) {sorted(unknown)}; expected some of {sorted(_TOP_KEYS)}"
        )
    version = document.get("version", _FORMAT_VERSION)
    if version != _FORMAT_VERSION:
        raise ConfigError(f"{origin}: expected version = {_FORMAT_VERSION}, but got {version!r}")
    sources = _parse_sources(document.get("sources", []), origin)
    rules = _parse_all_rules(document.get("rules", {}), origin)
    if base is not None:
        sources = _merge_sources(base.sources, sources)
        rules = _merge_rules(base.rules, rules, document.get("disable", []), origin)
    elif "disable" in document:
        raise ConfigError(f"{origin}: 'disable' needs extends = \"default\"; remove it or add extends")
    if not sources:
        raise ConfigError(f"{origin}: no [[sources]] declared; declare at least one attribute to read")
    known_sources = {source.name for source in sources}
    for field_rules in rules.values():
        for rule in field_rules:
            if rule.sources is not None and not rule.sources <= known_sources:
                missing = sorted(rule.sources - known_sources)
                raise ConfigError(
                    f"{origin}: rule {rule.field}.{rule.name}: unknown source(s) {missing}; "
                    f"expected names of declared sources"
                )
    ordered = tuple(sorted(sources, key=lambda s: s.rank))
    modalities = _parse_modalities(document, origin, base)
    return RuleSet(sources=ordered, rules=rules, origin=origin, modalities=modalities)


def _parse_modalities(document: dict[str, Any], origin: str, base: RuleSet | None) -> frozenset[str]:
    if "modalities" not in document:
        return base.modalities if base is not None else DEFAULT_MODALITIES
    raw = document["modalities"]
    if not isinstance(raw, list) or not all(isinstance(m, str) and m.strip() for m in raw):
        raise ConfigError(
            f"{origin}: 'modalities' must be a list of Modality (0008,0060) values such as "
            f'["US"], or [] for every modality, but got {raw!r}'
        )
    return frozenset(m.strip().upper() for m in raw)


def _parse_sources(entries: object, origin: str) -> list[Source]:
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: 'sources' must be an array of tables ([[sources]])")
    parsed: list[Source] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{origin}: source #{index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table, but got {entry!r}")
        unknown = set(entry) - _SOURCE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(_SOURCE_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: 'name' must be a non-empty string")
        where = f"{origin}: source {name!r}"
        path_text = entry.get("path", name)
        if not isinstance(path_text, str):
            raise ConfigError(f"{where}: 'path' must be a string of keywords joined by '.'")
        path = tuple(part.strip() for part in path_text.split("."))
        for position, keyword in enumerate(path):
            if keyword not in keyword_dict:
                raise ConfigError(
                    f"{where}: {keyword!r} is not a DICOM attribute keyword; "
                    "use pydicom keywords such as 'SeriesDescription'"
                )
            if position < len(path) - 1 and dictionary_VR(keyword) != "SQ":
                raise ConfigError(f"{where}: {keyword!r} is not a sequence, so nothing can follow it")
        rank = entry.get("rank")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
            raise ConfigError(f"{where}: 'rank' must be an integer >= 0 (lower = more trusted), got {rank!r}")
        fields = entry.get("fields", list(FIELDS))
        if not isinstance(fields, list) or not set(fields) <= set(FIELDS):
            raise ConfigError(f"{where}: 'fields' must list some of {list(FIELDS)}, but got {fields!r}")
        tag = tag_for_keyword(path[-1])
        assert tag is not None  # checked against keyword_dict above
        parsed.append(
            Source(
                name=name,
                path=path,
                rank=rank,
                fields=frozenset(fields),
                tag=f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
            )
        )
    names = [source.name for source in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{origin}: source name(s) {duplicates} declared twice; names must be unique")
    return parsed


def _parse_all_rules(table: object, origin: str) -> dict[str, tuple[Rule, ...]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: 'rules' must be a table of arrays ([[rules.side]], ...)")
    unknown = set(table) - set(FIELDS)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown field(s) {sorted(unknown)} under [rules]; expected some of {list(FIELDS)}"
        )
    result: dict[str, tuple[Rule, ...]] = {}
    for field in FIELDS:
        entries = table.get(field, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{origin}: rules.{field} must be an array of tables ([[rules.{field}]])")
        rules = tuple(_parse_rule(entry, field, index, origin) for index, entry in enumerate(entries, 1))
        names = [rule.name for rule in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"{origin}: rules.{field}: rule name(s) {duplicates} used twice")
        result[field] = rules
    return result


def _parse_rule(entry: object, field: str, index: int, origin: str) -> Rule:
    where = f"{origin}: rules.{field} #{index}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table, but got {entry!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    where = f"{origin}: rule {field}.{name}"
    unknown = set(entry) - _RULE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(_RULE_KEYS)}")
    kinds = [key for key in ("pattern", "tokens", "codes") if key in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of 'pattern', 'tokens' or 'codes', but got {kinds}")
    regex = _compile(entry, where)
    codes = frozenset(_parse_codes(entry.get("codes", []), where))
    if "codes" in entry and not codes:
        raise ConfigError(f"{where}: 'codes' is empty; list codes like \"SCT:11994002\"")
    value, levels = _parse_value(entry.get("value"), field, where)
    level_region = entry.get("region")
    if level_region is not None and (field != "levels" or level_region not in _LEVEL_REGIONS):
        raise ConfigError(f"{where}: 'region' is only for level rules and must be one of C, T, L, S")
    if field == "levels" and not levels:
        _check_level_groups(regex, level_region, where)
    elif value is None and not levels:
        raise ConfigError(f"{where}: 'value' is required for {field} rules")
    sources = entry.get("sources")
    if sources is not None and (
        not isinstance(sources, list) or not all(isinstance(s, str) for s in sources)
    ):
        raise ConfigError(f"{where}: 'sources' must be a list of source names")
    return Rule(
        name=name,
        field=field,
        regex=regex,
        codes=codes,
        value=value,
        levels=levels,
        level_region=level_region,
        sources=frozenset(sources) if sources is not None else None,
    )


def _compile(entry: dict[str, Any], where: str) -> re.Pattern[str] | None:
    if "pattern" in entry:
        pattern = entry["pattern"]
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}: 'pattern' must be a non-empty string")
        try:
            return re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(
                f"{where}: bad regular expression {pattern!r} ({exc}); fix it (Python 're' syntax)"
            ) from exc
    if "tokens" in entry:
        tokens = entry["tokens"]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise ConfigError(f"{where}: 'tokens' must be a non-empty list of non-empty strings")
        alternatives = sorted((_token_regex(t) for t in tokens), key=len, reverse=True)
        return re.compile("|".join(alternatives), re.IGNORECASE)
    return None


def _token_regex(token: str) -> str:
    """A literal token as a regex: flexible gaps, and ASCII word edges kept."""
    text = unicodedata.normalize("NFKC", token).strip()
    parts = [re.escape(part) for part in _TOKEN_GAP.split(text)]
    body = r"[\s_\-]*".join(parts)
    if text[0].isascii() and text[0].isalnum():
        body = r"(?<![A-Za-z0-9])" + body
    if text[-1].isascii() and text[-1].isalnum():
        body += r"(?![A-Za-z0-9])"
    return f"(?:{body})"


def _parse_codes(codes: object, where: str) -> list[str]:
    if not isinstance(codes, list):
        raise ConfigError(f"{where}: 'codes' must be a list of \"SCHEME:VALUE\" strings")
    parsed = []
    for code in codes:
        if not isinstance(code, str) or code.count(":") != 1 or "" in code.split(":"):
            raise ConfigError(f'{where}: expected a code like "SCT:11994002", but got {code!r}')
        scheme, value = code.split(":")
        parsed.append(f"{scheme.strip().upper()}:{value.strip()}")
    return parsed


def _parse_value(raw: object, field: str, where: str) -> tuple[str | None, tuple[SpinalLevel, ...]]:
    if raw is None:
        return None, ()
    try:
        if field == "levels":
            items = raw if isinstance(raw, list) else [raw]
            return None, tuple(SpinalLevel.parse(str(item)) for item in items)
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, but got {raw!r}")
        if field == "side":
            return Side.parse(raw).value, ()
        if field == "technique":
            if raw.strip().lower() in (Approach.IN_PLANE.value, Approach.OUT_OF_PLANE.value):
                raise ValueError(
                    f"{raw!r} is a needle approach, not a technique (TT, OT): "
                    "move this rule to [[rules.approach]]"
                )
            return Technique.parse(raw).value, ()
        if field == "approach":
            return Approach.parse(raw).value, ()
        if field == "procedure_type":
            return ProcedureType.parse(raw).value, ()
        if raw not in REGIONS:
            raise ValueError(f"region: expected one of {', '.join(REGIONS)}, but got {raw!r}")
        return raw, ()
    except ValueError as exc:
        raise ConfigError(f"{where}: unknown value ({exc}); use one of the listed values") from exc


def _check_level_groups(regex: re.Pattern[str] | None, level_region: str | None, where: str) -> None:
    if regex is None:
        raise ConfigError(f"{where}: a level rule with codes needs a 'value' such as \"L5\"")
    groups = set(regex.groupindex)
    if "first" not in groups or ("region" not in groups and level_region is None):
        raise ConfigError(
            f"{where}: a level rule without 'value' needs named groups 'first' and 'region' "
            f'(or a fixed region = "L"), but the pattern has {sorted(groups) or "none"}'
        )


def _merge_sources(base: tuple[Source, ...], extra: list[Source]) -> list[Source]:
    by_name = {source.name: source for source in base}
    for source in extra:
        by_name[source.name] = source
    return list(by_name.values())


def _merge_rules(
    base: Mapping[str, tuple[Rule, ...]],
    extra: Mapping[str, tuple[Rule, ...]],
    disable: object,
    origin: str,
) -> dict[str, tuple[Rule, ...]]:
    if not isinstance(disable, list) or not all(isinstance(d, str) for d in disable):
        raise ConfigError(f"{origin}: 'disable' must be a list of \"field.rule-name\" strings")
    known = {f"{rule.field}.{rule.name}" for rules in base.values() for rule in rules}
    unknown = sorted(set(disable) - known)
    if unknown:
        raise ConfigError(f'{origin}: cannot disable {unknown}: no such default rule (use "field.rule-name")')
    merged: dict[str, tuple[Rule, ...]] = {}
    for field in FIELDS:
        replacing = {rule.name: rule for rule in extra.get(field, ())}
        kept = [
            replacing.pop(rule.name, rule)
            for rule in base.get(field, ())
            if f"{field}.{rule.name}" not in disable
        ]
        added = [rule for rule in extra.get(field, ()) if rule.name in replacing]
        merged[field] = (*added, *kept)
    return merged
