"""The root command: lazily loaded subcommands and their listed help."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from archive.cli.main import ARCHIVE_COMMANDS, _load, main


def test_listed_help_is_each_commands_own_first_paragraph() -> None:
    for name, (target, listed) in ARCHIVE_COMMANDS.items():
        command = _load(target)
        assert command.name == name
        first = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
        assert listed == first, name


def test_help_lists_every_command_including_plugins() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for name in [*ARCHIVE_COMMANDS, "serve", "annotate"]:
        assert f"  {name} " in result.output


def test_running_one_command_does_not_import_the_others() -> None:
    # the receiver's process must not pay for matplotlib, scipy.stats or napari
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from archive.cli.main import main\n"
        "r = CliRunner().invoke(main, ['stats', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = ('matplotlib', 'scipy.stats', 'napari', 'archive.analysis.audit')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_load_refuses_a_non_command() -> None:
    try:
        _load("archive.model:Side")
    except click.ClickException as exc:
        assert "is not a click command" in str(exc)
    else:
        raise AssertionError("expected a ClickException")
