"""Errors of the worklist and MPPS: each says what was wrong, what was expected and what to do."""

from __future__ import annotations

from archive.errors import ArchiveError


class WorklistError(ArchiveError, ValueError):
    """A worklist entry cannot be scheduled, found or changed as asked."""


class WorklistImportError(WorklistError):
    """A worklist CSV has bad rows; nothing from it was scheduled.

    ``problems`` holds every bad row as ``(line number, reason)``, the header
    being line 1, so the whole file can be fixed in one pass.
    """

    def __init__(self, problems: list[tuple[int, str]], source: str = "worklist CSV") -> None:
        self.problems: tuple[tuple[int, str], ...] = tuple(problems)
        lines = "\n".join(f"  line {line}: {reason}" for line, reason in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{source}: expected every row to be valid, but {count} "
            f"{'row is' if count == 1 else 'rows are'} bad, so nothing was scheduled; "
            f"fix these and import the file again:\n{lines}"
        )


class StepError(WorklistError):
    """An MPPS N-CREATE or N-SET that cannot be applied; ``status`` is the DIMSE status to answer.

    PS3.4 F.7.2.1 / F.7.2.2 and PS3.7 C: 0x0110 processing failure (a step
    already COMPLETED or DISCONTINUED: "Performed Procedure Step Object may no
    longer be updated", with Error ID 0xA710), 0x0111 duplicate SOP instance,
    0x0112 no such object instance, 0x0106 invalid attribute value, 0x0120
    missing attribute, 0x0116 attribute value out of range.
    """

    def __init__(self, status: int, message: str, error_id: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
