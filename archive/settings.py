"""One immutable settings object for an archive, built once at the edge.

Library code receives an :class:`ArchiveSettings`; only the command line and
the server build one, from ``usarchive.toml``, the environment and flags
(:mod:`archive.config`). Library code reads no environment variable.
"""

from __future__ import annotations

import os
import re
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from archive.errors import ArchiveNotFoundError, ConfigError
from archive.forward.config import ForwardSettings
from archive.ingest import DuplicatePolicy
from archive.worklist.model import WorklistSettings

#: Environment variable naming the data directory.
ENV_HOME = "USARCHIVE_HOME"
#: Environment variable naming the index database URL.
ENV_DB = "USARCHIVE_DB"

_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/usarchive`` or ``~/.local/share/usarchive``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "usarchive"


def decode_secret(text: str) -> bytes:
    """The one decoder of a de-identification secret given as text.

    An even number of hex digits is decoded as hex; anything else is used as
    UTF-8. Surrounding whitespace (e.g. a file's final newline) is ignored. The
    configuration file's ``[deid] secret_file``, ``USARCHIVE_DEID_SECRET`` and
    ``export --secret-file`` all go through it, so one secret gives the same
    pseudonyms whichever way it is given.

    Parameters
    ----------
    text : str
        The secret as written.

    Returns
    -------
    bytes
    """
    value = text.strip()
    return bytes.fromhex(value) if _HEX.match(value) else value.encode("utf-8")


def read_secret_file(path: Path, *, what: str) -> bytes:
    """Read and decode (:func:`decode_secret`) the secret held in ``path``.

    Raises
    ------
    ConfigError
        If the file cannot be read as text or is empty; ``what`` names the setting.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{what} {str(path)!r}: expected a readable text file holding the secret, "
            f"but reading it failed ({type(exc).__name__}: {exc})"
        ) from exc
    if not text.strip():
        raise ConfigError(f"{what} {str(path)!r}: expected the secret in the file, but it is empty")
    return decode_secret(text)


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
    duplicate_policy : DuplicatePolicy
        What to do with a second instance of a SOP Instance UID (``[archive] duplicate_policy``).
    rules_path : Path or None
        Site rules file (``[archive] rules``); ``None`` uses the built-in rules.
    rule_modalities : tuple of str
        Modalities (0008,0060) the rules classify (``[archive] rule_modalities``);
        instances of other modalities (outside a study that has one) are stored
        unclassified. Empty: the rules file's own ``modalities`` (shipped: US).
    deid_secret : bytes or None
        De-identification secret, already decoded (``[deid] secret_file`` or
        ``USARCHIVE_DEID_SECRET``); never printed.
    reviewer : str or None
        The person using this workstation (``[review] reviewer`` or ``USARCHIVE_REVIEWER``).
    four_eyes : bool
        Refuse approving one's own annotation (``[review] four_eyes``).
    napari_patches : bool
        Let the annotator reach into napari's internals (``[review] napari_patches``;
        ``annotate --no-napari-patches`` overrides it).
    forward : ForwardSettings
        The destination table and the forwarding routes (``[destinations.*]``,
        ``[forward]``); ingest inserts the tasks of the routes an instance matches.
    worklist : WorklistSettings
        ``[worklist]``: expiry of scheduled entries and the MWL result limit.
    """

    data_dir: Path
    db_url: str | None = None
    _: KW_ONLY
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    rules_path: Path | None = None
    rule_modalities: tuple[str, ...] = ()
    deid_secret: bytes | None = field(default=None, repr=False)
    reviewer: str | None = None
    four_eyes: bool = True
    napari_patches: bool = True
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    worklist: WorklistSettings = field(default_factory=WorklistSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.duplicate_policy, DuplicatePolicy):
            try:
                object.__setattr__(
                    self, "duplicate_policy", DuplicatePolicy.parse(str(self.duplicate_policy))
                )
            except ValueError as exc:
                raise ConfigError(f"duplicate_policy: {exc}") from exc
        if self.reviewer is not None and not self.reviewer.strip():
            object.__setattr__(self, "reviewer", None)
        elif self.reviewer is not None:
            object.__setattr__(self, "reviewer", self.reviewer.strip())
        modalities = tuple(m.strip().upper() for m in self.rule_modalities)
        if any(not m for m in modalities):
            raise ConfigError("rule_modalities: expected modality codes such as 'US', but got an empty one")
        object.__setattr__(self, "rule_modalities", modalities)

    @property
    def resolved_db_url(self) -> str:
        """The index URL, with the embedded SQLite default filled in."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @property
    def uses_embedded_index(self) -> bool:
        """Whether the index is the SQLite file in the data directory."""
        return not self.db_url

    @property
    def description(self) -> str:
        """Which archive this is, for messages: the data directory, and the index when not embedded."""
        if self.uses_embedded_index:
            return str(self.data_dir)
        return f"{self.data_dir} (index {redact_url(self.resolved_db_url)})"

    @classmethod
    def from_environment(
        cls, data_dir: Path | str | None = None, db_url: str | None = None
    ) -> ArchiveSettings:
        """Settings as the command line builds them: ``usarchive.toml``, environment, then the values given.

        Parameters
        ----------
        data_dir, db_url : optional
            Explicit values win over the environment and the configuration file.

        Returns
        -------
        ArchiveSettings
        """
        from archive.config import load_configuration

        path = None if data_dir is None else Path(data_dir)
        return load_configuration(data_dir=path, db_url=db_url, environ=os.environ).archive


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and ``config show``)."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def missing_archive_reason(settings: ArchiveSettings) -> str | None:
    """Why ``settings`` name no archive on disk, or ``None`` when the store (and SQLite index) exist."""
    if not settings.data_dir.is_dir():
        return "the directory does not exist"
    if not (settings.data_dir / "store").is_dir():
        return "it has no store/ directory"
    if settings.uses_embedded_index and not (settings.data_dir / "index.sqlite").is_file():
        return "it has no index.sqlite"
    return None


def archive_not_found(settings: ArchiveSettings, why: str) -> ArchiveNotFoundError:
    """The error refusing a data directory that holds no archive: the path, why, and ``usarchive init``."""
    return ArchiveNotFoundError(
        f"no archive at {settings.data_dir}: expected a data directory made by `usarchive init`, but {why}; "
        f"check --data-dir (or {ENV_HOME}), or create the archive with: usarchive init {settings.data_dir}"
    )
