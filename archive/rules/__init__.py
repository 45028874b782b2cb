"""Level, side, technique and procedure type from what the scanner sends.

Configurable rules (TOML, defaults shipped in ``default.toml``) read the
attributes a scanner fills (worklist copies, codes, Body Part Examined, free
text, Image Laterality) in order of trust. See ``docs/rules.md``.

Examples
--------
>>> from archive.rules import classify_text
>>> c = classify_text("L4/5 MBB R one needle")
>>> [level.value for level in c.levels], c.side.value, c.technique.value
(['L4', 'L5'], 'right', 'OT')
"""

from __future__ import annotations

from archive.rules.engine import TEXT_SOURCE, Classification, classify, classify_text, in_scope
from archive.rules.loader import FIELDS, REGIONS, Rule, RuleSet, Source, default_rules, load_rules

__all__ = [
    "FIELDS",
    "REGIONS",
    "TEXT_SOURCE",
    "Classification",
    "Rule",
    "RuleSet",
    "Source",
    "classify",
    "classify_text",
    "default_rules",
    "in_scope",
    "load_rules",
]
