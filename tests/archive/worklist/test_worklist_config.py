"""``[worklist]`` in usarchive.toml: typed keys, errors with file and line, reaching the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.config import load_configuration
from archive.config_show import template
from archive.errors import ConfigError


def test_worklist_keys_are_read_into_the_archive_settings(tmp_path: Path) -> None:
    config = tmp_path / "usarchive.toml"
    config.write_text("[worklist]\nexpire_after_hours = 6\nmax_results = 50\n", encoding="utf-8")
    loaded = load_configuration(config_path=config, environ={})
    assert loaded.archive.worklist.expire_after_hours == 6
    assert loaded.archive.worklist.max_results == 50
    assert loaded.sources["worklist.expire_after_hours"] == f"{config}:2"
    assert (
        load_configuration(environ={}, data_dir=tmp_path / "elsewhere").archive.worklist.expire_after_hours
        == 24
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[worklist]\nexpire_after_hours = 0\n", ":2: [worklist] expire_after_hours: expected a whole"),
        ('[worklist]\n\nmax_results = "10"\n', ":3: [worklist] max_results: expected a whole number"),
        ("[worklist]\nexpire = 3\n", ":2: [worklist] expire: unknown key; expected some of"),
    ],
)
def test_bad_worklist_values_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "usarchive.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="worklist") as caught:
        load_configuration(config_path=config, environ={})
    assert message in str(caught.value)


def test_the_init_template_documents_the_worklist_section(tmp_path: Path) -> None:
    text = template(tmp_path)
    assert "[worklist]" in text and "# expire_after_hours = 24" in text and "# max_results = 500" in text
