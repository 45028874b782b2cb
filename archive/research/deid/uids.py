"""Keyed replacement identifiers: pseudonyms and UIDs.

Every replacement is an HMAC-SHA256 of the original value under a secret from
the configuration, so the same original always gets the same replacement (a
patient keeps one pseudonym across exports, references between instances stay
consistent) while nobody without the secret can recompute or reverse it. Each
use is domain-separated (a label enters the HMAC message), so a patient's
pseudonym, a UID and a date shift derived from the same text are unrelated.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from pydicom.uid import UID

from archive.errors import DeidentificationError

#: Shortest secret accepted, in bytes (128 bits).
MIN_SECRET_BYTES = 16
#: Hex digits in a pseudonym: 48 bits keep collisions unlikely (about 1 in
#: 5,600 for 10,000 patients) while staying readable.
PSEUDONYM_HEX_DIGITS = 12
#: Root of UUID-derived UIDs (ISO/IEC 9834-8, PS3.5 B.2).
UUID_ROOT = "2.25."

# UI attributes naming a class, syntax or scheme, never an instance: kept.
_KEPT_UID_KEYWORD_SUFFIXES = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID")
_KEPT_UID_KEYWORDS = frozenset(
    {
        "ImplementationClassUID",
        "RelatedGeneralSOPClassUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "PrivateInformationCreatorUID",
    }
)


class PseudonymKind(enum.StrEnum):
    """What a pseudonym stands for; its value is the pseudonym's prefix."""

    PATIENT = "P"
    STUDY = "S"
    ACCESSION = "A"
    PERSON = "O"
    REVIEWER = "R"

    def __str__(self) -> str:
        return str(self.value)


def check_secret(secret: bytes) -> bytes:
    """Return ``secret`` if it can key the HMACs, else raise.

    Raises
    ------
    DeidentificationError
        If ``secret`` is not bytes or shorter than :data:`MIN_SECRET_BYTES`.
    """
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        got = f"{len(secret)} bytes" if isinstance(secret, bytes) else type(secret).__name__
        raise DeidentificationError(
            f"de-identification secret: expected at least {MIN_SECRET_BYTES} bytes, but got {got}; "
            "set a long random secret in the configuration (e.g. `python -c 'import secrets; "
            "print(secrets.token_hex(32))'`) and keep it to get the same pseudonyms in later exports"
        )
    return secret


def keyed_digest(secret: bytes, label: str, value: str) -> bytes:
    """HMAC-SHA256 of ``value`` under ``secret``, separated by ``label``.

    Parameters
    ----------
    secret : bytes
        At least :data:`MIN_SECRET_BYTES` bytes.
    label : str
        What the digest is for (``"uid"``, ``"pseudonym:P"``, ``"date-shift"``).
    value : str
        The original value, encoded as UTF-8.

    Returns
    -------
    bytes
        32 bytes.
    """
    message = label.encode("utf-8") + b"\x1f" + value.encode("utf-8")
    return hmac.new(check_secret(secret), message, hashlib.sha256).digest()


def pseudonym(secret: bytes, value: str, kind: PseudonymKind | str = PseudonymKind.PATIENT) -> str:
    """A stable, readable pseudonym for an identifier, e.g. ``"P-3F9A1C2D7E10"``.

    Parameters
    ----------
    secret : bytes
        The configured secret; the same secret gives the same pseudonym in
        every export.
    value : str
        The original identifier (surrounding spaces ignored, as DICOM pads).
    kind : PseudonymKind or str
        What the value identifies; its letter prefixes the pseudonym. A
        string is converted (``"patient"`` or ``"P"``).

    Returns
    -------
    str
        ``"<letter>-"`` and :data:`PSEUDONYM_HEX_DIGITS` upper-case hex digits;
        fits SH, LO and PN.

    Raises
    ------
    DeidentificationError
        If the secret is too short or ``kind`` is unknown.
    """
    kind = _pseudonym_kind(kind)
    digest = keyed_digest(secret, f"pseudonym:{kind.value}", value.strip())
    return f"{kind.value}-{digest.hex()[:PSEUDONYM_HEX_DIGITS].upper()}"


def _pseudonym_kind(kind: PseudonymKind | str) -> PseudonymKind:
    if isinstance(kind, PseudonymKind):
        return kind
    for member in PseudonymKind:
        if kind in (member.value, member.name.lower()):
            return member
    names = ", ".join(member.name.lower() for member in PseudonymKind)
    raise DeidentificationError(f"pseudonym kind: expected one of {names}, but got {kind!r}")


def replace_uid(secret: bytes, uid: str) -> str:
    """A consistent, non-identifying replacement for an instance-like UID.

    The first 128 bits of the keyed digest become a version-8 (custom) UUID
    written as a ``2.25.`` UID, at most 44 characters.

    Parameters
    ----------
    secret : bytes
        The configured secret.
    uid : str
        The original UID (trailing NUL or space padding ignored).

    Returns
    -------
    str
        The replacement; the same for the same ``uid`` and ``secret``.
    """
    digest = keyed_digest(secret, "uid", uid.rstrip("\x00 "))
    number = int.from_bytes(digest[:16], "big")
    number &= ~(0xF << 76)  # version field
    number |= 0x8 << 76
    number &= ~(0x3 << 62)  # variant field: RFC 4122 (binary 10)
    number |= 0x2 << 62
    return f"{UUID_ROOT}{number}"


def is_instance_uid(keyword: str, value: str) -> bool:
    """Whether a UI value identifies an instance (and must be replaced).

    Class, transfer-syntax and coding-scheme UIDs, and any UID under the
    DICOM standard's root ``1.2.840.10008`` (well-known UIDs of PS3.6
    Annex A), are kept; every other UID is treated as identifying.

    Parameters
    ----------
    keyword : str
        The attribute's keyword (empty for unknown tags).
    value : str
        One UID value.
    """
    if keyword in _KEPT_UID_KEYWORDS or keyword.endswith(_KEPT_UID_KEYWORD_SUFFIXES):
        return False
    return UID(value.rstrip("\x00 ")).is_private
