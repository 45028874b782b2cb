"""Writer of an export as a directory of DICOM files, written atomically.

:class:`DicomDirectoryWriter` writes every instance into ``<OUTDIR>.partial``
beside the final directory, each file fsynced, and renames the directory to
its final name only in :meth:`~DicomDirectoryWriter.close`, after writing the
export card (``export-card.md``) into it; a failed export leaves nothing under
the final name. Files are named from the (new) UIDs only, never from patient
data: ``<patient pseudonym>/<SOP Instance UID>.dcm`` for de-identified
instances, ``<SOP Instance UID>.dcm`` for measurement reports.

:func:`deidentified_card_markdown` says what the research directory holds and
how it was de-identified; :func:`report_card_markdown` says that measurement
reports are *not* de-identified.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pydicom import dcmwrite
from pydicom.dataset import Dataset

import archive
from archive.errors import ExportError
from archive.fsutil import fsync_directory

logger = logging.getLogger(__name__)

#: Name of the card written into every export directory.
CARD_NAME = "export-card.md"


def _safe_part(text: str) -> str:
    part = str(text).strip()
    if not part or part in (".", "..") or any(c in part for c in "/\\\0"):
        raise ExportError(
            f"DICOM export: expected a UID or pseudonym as a file name part, but got {text!r}; "
            "name files from de-identified UIDs only"
        )
    return part


@dataclass(frozen=True)
class WrittenFile:
    """One file of the export directory.

    Attributes
    ----------
    relative_path : Path
        Path inside the export directory.
    sop_instance_uid : str
        SOP Instance UID of the instance written (the new one when de-identified).
    """

    relative_path: Path
    sop_instance_uid: str


class DicomDirectoryWriter:
    """Write DICOM instances into a new directory, which appears only when complete.

    Use as a context manager and call :meth:`close` (with the card) to
    finish; leaving the ``with`` block without it (e.g. by an exception)
    calls :meth:`abort`.

    Parameters
    ----------
    out_dir : path-like
        The final directory. It must not exist, or be empty.

    Raises
    ------
    ExportError
        If ``out_dir`` is a file or a directory that is not empty.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and (not self.out_dir.is_dir() or any(self.out_dir.iterdir())):
            raise ExportError(
                f"{self.out_dir}: expected a new or empty directory for the DICOM export, but it "
                f"{'is a file' if not self.out_dir.is_dir() else 'is not empty'}; choose another name"
            )
        self.partial_dir = self.out_dir.with_name(self.out_dir.name + ".partial")
        if self.partial_dir.exists():
            raise ExportError(
                f"{self.partial_dir}: expected no partial export here, but one exists (an export "
                "running now or one that was killed); remove it or choose another output name"
            )
        self.partial_dir.mkdir(parents=True)
        self._files: list[WrittenFile] = []
        self._open = True

    def __enter__(self) -> DicomDirectoryWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._open:  # an exception, or no close(): the export is incomplete
            self.abort()

    @property
    def files(self) -> tuple[WrittenFile, ...]:
        """Files written so far, in order."""
        return tuple(self._files)

    def add(self, ds: Dataset, *, folder: str | None = None) -> WrittenFile:
        """Write one instance as ``[folder/]<SOPInstanceUID>.dcm`` (Part 10, fsynced).

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            The instance with its file meta.
        folder : str, optional
            A subdirectory, e.g. the patient pseudonym.

        Returns
        -------
        WrittenFile

        Raises
        ------
        ExportError
            If the writer is closed, the name is unsafe, or the instance was
            already written.
        """
        if not self._open:
            raise ExportError(
                f"{self.out_dir}: the writer is closed (finished or aborted); start a new export"
            )
        uid = _safe_part(str(ds.get("SOPInstanceUID", "")))
        relative = Path(f"{uid}.dcm") if folder is None else Path(_safe_part(folder)) / f"{uid}.dcm"
        target = self.partial_dir / relative
        if target.exists():
            raise ExportError(f"{relative}: already in this export; export each instance once")
        target.parent.mkdir(exist_ok=True)
        try:
            with target.open("xb") as handle:
                dcmwrite(handle, ds, enforce_file_format=True)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        written = WrittenFile(relative, uid)
        self._files.append(written)
        logger.debug("wrote %s", relative)
        return written

    def close(self, card_markdown: str) -> Path:
        """Write the card, fsync and move the directory to its final name.

        Parameters
        ----------
        card_markdown : str
            Text of ``export-card.md``.

        Returns
        -------
        Path
            The final directory.
        """
        if not self._open:
            raise ExportError(
                f"{self.out_dir}: the writer is closed (finished or aborted); start a new export"
            )
        try:
            card = self.partial_dir / CARD_NAME
            card.write_text(card_markdown, encoding="utf-8")
            for folder in {self.partial_dir / f.relative_path.parent for f in self._files} | {
                self.partial_dir
            }:
                fsync_directory(folder)
            if self.out_dir.exists():
                self.out_dir.rmdir()  # empty (checked at the start); rename needs it gone
            self.partial_dir.rename(self.out_dir)
            fsync_directory(self.out_dir.parent)
        except BaseException:
            self.abort()
            raise
        self._open = False
        logger.info("DICOM export %s written: %d file(s)", self.out_dir, len(self._files))
        return self.out_dir

    def abort(self) -> None:
        """Give up: delete the partial directory; nothing appears under the final name."""
        self._open = False
        if self.partial_dir.exists():
            for path in sorted(self.partial_dir.rglob("*"), reverse=True):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
            self.partial_dir.rmdir()
        logger.info("DICOM export %s aborted; partial directory removed", self.out_dir)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def deidentified_card_markdown(
    files: Sequence[WrittenFile],
    *,
    n_patients: int,
    method_codes: Sequence[str],
    not_pixel_cleaned: Sequence[WrittenFile],
    selection: str,
) -> str:
    """The card of a de-identified DICOM export directory (Markdown).

    Parameters
    ----------
    files : sequence of WrittenFile
        Every instance written.
    n_patients : int
        Number of distinct patient pseudonyms.
    method_codes : sequence of str
        CID 7050 codes applied to at least one file (e.g. ``"113101"``).
    not_pixel_cleaned : sequence of WrittenFile
        Files whose pixels were left unchanged (uncalibrated, allowed).
    selection : str
        How the clips were selected, free of patient data.
    """
    lines = [
        "# De-identified DICOM export",
        "",
        f"- created: {_now()} by usarchive {archive.__version__}",
        f"- files: {len(files)}, patients (pseudonyms): {n_patients}",
        f"- selection: {selection or 'all clips'}",
        f"- de-identification method codes (DCM, CID 7050): {', '.join(sorted(method_codes)) or 'none'}",
        "",
        "Every file was de-identified with the PS3.15 Basic Application Level Confidentiality "
        "Profile (113100): private attributes removed, identifying attributes removed or replaced, "
        "UIDs replaced by keyed ones, patient name and ID replaced by a keyed pseudonym, dates "
        "shifted by a per-patient number of days (113107). Pixels outside the 2D ultrasound regions "
        "are set to 0 (Clean Pixel Data, 113101), which removes the burned-in banner; text burned "
        "inside a region is not removed. See docs/deidentification.md and docs/export.md.",
        "",
        "## Not pixel-cleaned",
        "",
    ]
    if not_pixel_cleaned:
        lines.append(
            "These clips have no 2D ultrasound region and were exported with their pixels unchanged "
            "(--allow-uncalibrated); they may show burned-in patient data. Burned In Annotation "
            "is not set to NO and code 113101 is absent in them:"
        )
        lines.append("")
        lines.extend(f"- {f.relative_path.as_posix()}" for f in not_pixel_cleaned)
    else:
        lines.append("None: every file is pixel-cleaned.")
    return "\n".join(lines) + "\n"


def report_card_markdown(files: Sequence[WrittenFile], *, selection: str, sent_to: str | None) -> str:
    """The card of a directory of measurement reports (Markdown), saying they are NOT de-identified."""
    lines = [
        "# Measurement reports (DICOM SR, TID 1500)",
        "",
        f"- created: {_now()} by usarchive {archive.__version__}",
        f"- reports: {len(files)}",
        f"- selection: {selection or 'all clips'}",
        f"- sent to: {sent_to or 'not sent'}",
        "",
        "These reports are NOT de-identified: each carries the patient and study of the original "
        "clip it references, so that the hospital PACS files it with that clip. Do not hand them "
        "out as research data; use `usarchive export --format hdf5` or `--format dicom` for that.",
    ]
    return "\n".join(lines) + "\n"
