"""How to de-identify: one immutable options object, built once from the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from archive.errors import ConfigError, DeidentificationError
from archive.research.deid.uids import check_secret
from archive.settings import ArchiveSettings

#: Where the secret is configured, for messages (``usarchive.toml``).
SECRET_OPTION = "[deid] secret_file"


@dataclass(frozen=True)
class DeidOptions:
    """Options of :func:`archive.research.deid.apply.deidentify_dataset`.

    Parameters
    ----------
    secret : bytes
        Keys every pseudonym, replacement UID and date shift (HMAC-SHA256); at
        least 16 bytes. Keep it: the same secret gives the same pseudonyms in
        every export, another secret unrelated ones.
    retain_longitudinal_dates_modified : bool
        Shift every date of a patient by the same number of days (DCM 113107)
        instead of removing dates. Default True.
    clean_pixels : bool
        Blank all pixels outside the 2D ultrasound regions (DCM 113101).
        Default True.
    allow_uncalibrated : bool
        When cleaning pixels, accept a clip without 2D regions and leave its
        pixels unchanged (the result says ``pixels_cleaned=False``); by
        default such a clip is refused.
    keep_private : bool
        Must stay False: private attributes are always removed (the Retain
        Safe Private Option, DCM 113111, is not implemented).

    Raises
    ------
    DeidentificationError
        If the secret is short or ``keep_private`` is True.
    """

    secret: bytes
    retain_longitudinal_dates_modified: bool = True
    clean_pixels: bool = True
    allow_uncalibrated: bool = False
    keep_private: bool = False

    def __post_init__(self) -> None:
        check_secret(self.secret)
        if self.keep_private:
            raise DeidentificationError(
                "keep_private: expected False, but got True; the Retain Safe Private Option is not "
                "implemented and private attributes are always removed"
            )

    def __repr__(self) -> str:
        # Never print the secret (logs, tracebacks).
        return (
            f"DeidOptions(secret=<{len(self.secret)} bytes>, "
            f"retain_longitudinal_dates_modified={self.retain_longitudinal_dates_modified}, "
            f"clean_pixels={self.clean_pixels}, allow_uncalibrated={self.allow_uncalibrated}, "
            f"keep_private={self.keep_private})"
        )

    @classmethod
    def from_settings(cls, settings: ArchiveSettings, **overrides: bool) -> DeidOptions:
        """Build options with the secret of ``settings`` (:attr:`ArchiveSettings.deid_secret`).

        Parameters
        ----------
        settings : ArchiveSettings
            Its secret was decoded once, at the edge, by :func:`archive.settings.decode_secret`
            (the same decoder ``export --secret-file`` uses).
        **overrides : bool
            Any other field, e.g. ``allow_uncalibrated=True``.

        Raises
        ------
        ConfigError
            If no secret is configured.
        DeidentificationError
            If the secret is shorter than 16 bytes.
        """
        if settings.deid_secret is None:
            raise ConfigError(
                f"de-identification secret: expected one, but none is configured; set {SECRET_OPTION} "
                "in usarchive.toml (or USARCHIVE_DEID_SECRET) before exporting, and keep it to get "
                "stable pseudonyms across exports"
            )
        return cls(secret=settings.deid_secret, **overrides)
