"""One immutable settings object for an archive, built once at the edge.

Library code receives an :class:`ArchiveSettings`; only the command line and
the server read the environment (``USARCHIVE_HOME``, ``USARCHIVE_DB``) and TOML
files to build one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from archive.errors import ConfigError

#: Environment variable naming the data directory.
ENV_HOME = "USARCHIVE_HOME"
#: Environment variable naming the index database URL.
ENV_DB = "USARCHIVE_DB"


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/usarchive`` or ``~/.local/share/usarchive``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "usarchive"


@dataclass(frozen=True)
class ArchiveSettings:
    """Where an archive lives and how it behaves.

    Parameters
    ----------
    data_dir : Path
        Directory holding the file store and, by default, the SQLite index.
    db_url : str or None
        SQLAlchemy URL of the index; ``None`` means SQLite at
        ``data_dir / "index.sqlite"``.
    options : dict
        Further settings by name (e.g. ``duplicate_policy``), validated by the
        components that use them.
    """

    data_dir: Path
    db_url: str | None = None
    options: dict[str, object] = field(default_factory=dict)

    @property
    def resolved_db_url(self) -> str:
        """The index URL, with the embedded SQLite default filled in."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @classmethod
    def from_environment(
        cls,
        data_dir: Path | str | None = None,
        db_url: str | None = None,
        **options: object,
    ) -> ArchiveSettings:
        """Build settings from explicit values, then the environment, then defaults.

        Parameters
        ----------
        data_dir, db_url : optional
            Explicit values win over ``USARCHIVE_HOME`` and ``USARCHIVE_DB``.
        **options
            Stored in :attr:`options`.
        """
        home = data_dir if data_dir is not None else os.environ.get(ENV_HOME)
        path = Path(home).expanduser() if home else default_data_dir()
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"data directory: expected a directory, but {str(path)!r} is a file; "
                f"pass --data-dir or set {ENV_HOME} to a directory"
            )
        url = db_url if db_url is not None else os.environ.get(ENV_DB) or None
        return cls(data_dir=path, db_url=url, options=dict(options))

    def flag(self, name: str, *, default: bool) -> bool:
        """The yes/no option ``name`` (a bool, or one of true/false/yes/no/1/0); ``default`` when unset.

        Raises
        ------
        ConfigError
            If the option is set to anything else.
        """
        value = self.options.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"setting {name}: expected true or false, but got {value!r}; fix the setting")
