"""Procedures' clinical outcomes in the archive: :attr:`archive.archive.Archive.outcomes`.

The same shape as :attr:`Archive.annotations`: one store object over the index,
the SQL in :mod:`archive.index.outcomes`, the model and the CSV format in
:mod:`archive.outcomes`. Commands only parse and print.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from archive.errors import OutcomeImportError
from archive.index import outcomes as idx
from archive.index.engine import read_transaction, write_transaction
from archive.model import Side
from archive.outcomes import Outcome, parse_outcomes_csv

logger = logging.getLogger(__name__)


class OutcomeStore:
    """Outcomes per procedure (study and side) and their history, in the index at ``engine``.

    Get one from :attr:`archive.archive.Archive.outcomes`.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Engine of an index migrated to version 3 or later.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def import_csv(self, path: Path, *, source: str | None = None) -> list[idx.OutcomeChange]:
        """Import an outcomes CSV, all or nothing.

        Parameters
        ----------
        path : Path
            The CSV (columns of :data:`archive.outcomes.CSV_COLUMNS`, UTF-8).
        source : str, optional
            Recorded as the values' source; default ``"import:<file name>"``.

        Returns
        -------
        list of OutcomeChange
            What changed (rows equal to the stored outcome change nothing).

        Raises
        ------
        OutcomeImportError
            If a row is invalid or names a study the index does not have; its
            ``problems`` list every such row by line. Nothing is written then.
        """
        outcomes = parse_outcomes_csv(path)
        label = source or f"import:{path.name}"
        with write_transaction(self.engine) as connection:
            unknown, changes = idx.record_import(connection, outcomes, source=label, now=datetime.now(UTC))
            if unknown:
                lines = _lines_by_study(path.read_bytes().decode("utf-8-sig"))
                problems = [
                    (
                        line,
                        f"study_uid: expected a study in the archive, but there is no study {uid}; "
                        "import its clips first or correct the UID",
                    )
                    for uid in unknown
                    for line in lines.get(uid, [0])
                ]
                raise OutcomeImportError(sorted(problems), str(path))
        logger.info("%s: %d outcomes read, %d changed", path, len(outcomes), len(changes))
        return changes

    def set(
        self, study_uid: str, side: Side, values: dict[str, Any], *, source: str
    ) -> tuple[Outcome, idx.OutcomeChange | None]:
        """Set some values of one procedure's outcome (:func:`archive.index.outcomes.set_outcome`)."""
        return idx.set_outcome(self.engine, study_uid, side, values, source=source)

    def of_study(self, study_uid: str) -> list[idx.StoredOutcome]:
        """The stored outcomes of the procedures of ``study_uid``, by side."""
        with read_transaction(self.engine) as connection:
            return idx.load_outcomes(connection, study_uid)

    def history(self, study_uid: str) -> list[idx.OutcomeChange]:
        """Every recorded change of the outcomes of ``study_uid``, oldest first."""
        with read_transaction(self.engine) as connection:
            return idx.load_history(connection, study_uid)

    def of_studies(self, study_uids: Iterable[str] | None = None) -> list[Outcome]:
        """Stored outcomes of ``study_uids`` (all when ``None``)."""
        return idx.outcomes_for(self.engine, study_uids)


def _lines_by_study(text: str) -> dict[str, list[int]]:
    """Line numbers (header = 1; a row by its first line) of the data rows of each study UID."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    lines: dict[str, list[int]] = {}
    next(reader, None)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except (StopIteration, csv.Error):
            return lines
        if cells and cells[0].strip():
            lines.setdefault(cells[0].strip(), []).append(start)
