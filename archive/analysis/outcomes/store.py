"""Procedures' clinical outcomes in the archive: :attr:`archive.archive.Archive.outcomes`.

The same shape as :attr:`Archive.annotations`: one store object over the index,
the SQL in :mod:`archive.analysis.outcomes.sql`, the model and the CSV format in
:mod:`archive.analysis.outcomes.model`. Commands only parse and print.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from archive.analysis.outcomes import sql as idx
from archive.analysis.outcomes.match import match_records
from archive.analysis.outcomes.model import Outcome, read_outcome_records
from archive.errors import OutcomeImportError
from archive.index.engine import read_transaction, write_transaction
from archive.model import Side

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
        """Import an outcomes CSV (or a filled ``usarchive outcome template``), all or nothing.

        Rows are matched to their study by study UID, accession number, or
        patient ID + study date, and must name a side the study has a clip of
        (:func:`archive.analysis.outcomes.match.match_records`).

        Parameters
        ----------
        path : Path
            The CSV (columns of :data:`archive.analysis.outcomes.model.CSV_COLUMNS` or
            :data:`archive.analysis.outcomes.model.TEMPLATE_COLUMNS`, UTF-8).
        source : str, optional
            Recorded as the values' source; default ``"import:<file name>"``.

        Returns
        -------
        list of OutcomeChange
            What changed (rows equal to the stored outcome change nothing).

        Raises
        ------
        OutcomeImportError
            If a row is invalid, names no study of the index (or several), or a
            side without a clip; its ``problems`` list every such row by line, all
            in one pass. Nothing is written then.
        """
        records, problems = read_outcome_records(path)
        label = source or f"import:{path.name}"
        with write_transaction(self.engine) as connection:
            outcomes, unmatched = match_records(connection, records)
            problems = sorted(problems + unmatched)
            if problems:
                raise OutcomeImportError(problems, str(path))
            changes = idx.write_outcomes(connection, outcomes, source=label, now=datetime.now(UTC))
        logger.info("%s: %d outcomes read, %d changed", path, len(outcomes), len(changes))
        return changes

    def set(
        self, study_uid: str, side: Side, values: dict[str, Any], *, source: str
    ) -> tuple[Outcome, idx.OutcomeChange | None]:
        """Set some values of one procedure's outcome (:func:`archive.analysis.outcomes.sql.set_outcome`)."""
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
