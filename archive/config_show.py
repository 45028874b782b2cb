"""The configuration as people read it: ``usarchive config show``'s rows and ``usarchive init``'s template.

Both follow :data:`archive.config.KEYS`, the one table of every archive-owned key,
then the sections other owners add (the destination table and forwarding,
the receiver's tables).
"""

from __future__ import annotations

from pathlib import Path

from archive.config import KEYS, KEYS_BY_NAME, Configuration, Key
from archive.forward.config import template_lines


def render_show(config: Configuration) -> list[tuple[str, str, str]]:
    """Rows ``(source, key, value)`` of ``usarchive config show``: every key, then the receiver's tables."""
    rows = [(config.sources[key.dotted], key.dotted, _shown(config.values[key.dotted])) for key in KEYS]
    for dotted, value in config.values.items():  # the destination table and forwarding
        if dotted not in KEYS_BY_NAME:
            rows.append((config.sources[dotted], dotted, _shown(value)))
    for section, table in config.tables.items():
        for name, value in table.items():
            rows.append((config.where(section, name), f"{section}.{name}", _shown(value)))
    return rows


def _shown(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, dict):  # a sub-table such as [server.permissions]
        return "{" + ", ".join(f"{k} = {_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def template(data_dir: Path) -> str:
    """The commented ``usarchive.toml`` that ``usarchive init`` writes into ``data_dir``."""
    out = [
        "# usarchive configuration (read by every usarchive command for this archive).",
        "# Found by --config, then USARCHIVE_CONFIG, then <data_dir>/usarchive.toml;",
        "# environment variables and command-line flags override it. Relative paths are",
        "# relative to this file. `usarchive config show` prints the effective values.",
        "",
    ]
    section = ""
    for key in KEYS:
        if key.section != section:
            section = key.section
            out += ["", f"[{section}]"]
        over = ", ".join(x for x in (f"env {key.env}" if key.env else "", key.flag or "") if x)
        out.append(f"# {key.help}" + (f" Overridden by {over}." if over else ""))
        if key.dotted == "archive.data_dir":
            out.append(f"# data_dir = {_toml(str(data_dir))}  (this file's directory when found there)")
        else:
            out.append(f"# {key.name} = {_toml(key.default) if key.default is not None else _example(key)}")
    out += [
        "",
        "# The DICOM receiver (usarchive serve): see docs/pacs_bridge.md.",
        "# [server]",
        '# aet = "USARCHIVE"',
        "# port = 11112",
        '# allow = ["SCANNER1"]                 # may echo and store',
        "# find_max_results = 1000               # C-FIND: more matches are refused (0xA700)",
        "# [server.permissions]                  # echo, store, find, move, get, worklist",
        '# WORKSTATION = ["echo", "find", "move"]',
        "# [tls]",
        '# certificate = "server.crt"',
        '# key = "server.key"',
        "# [commitment_peers]",
        '# SCANNER1 = "10.0.0.5:104"',
        *template_lines(),
        "",
    ]
    return "\n".join(out)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _example(key: Key) -> str:
    examples = {
        "archive.db": '"postgresql://usarchive@dbhost/usarchive"',
        "archive.rules": '"site-rules.toml"',
        "deid.secret_file": '"deid-secret.txt"',
        "review.reviewer": '"dr-smith"',
        "log.file": '"usarchive.log"',
        "web.certificate": '"web.crt"',
        "web.key": '"web.key"',
        "web.access_log": '"web-access.log"',
        "web.audit_report": '"reports/audit.html"',
    }
    return examples.get(key.dotted, '""')
