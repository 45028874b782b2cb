"""The index's own domain: finding, describing, counting and tagging instances (``Archive.index``).

The same shape as :attr:`Archive.annotations <archive.archive.Archive.annotations>` and
:attr:`Archive.outcomes <archive.archive.Archive.outcomes>`: one store object over the
engine, its SQL in :mod:`archive.index.queries`, :mod:`archive.index.tags`,
:mod:`archive.index.uid_lookup` and :mod:`archive.index.patients`; commands only parse
and print.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select

from archive.errors import ArchiveError
from archive.index import describe, queries, schema, tags, uid_lookup
from archive.index.describe import UidDescription
from archive.index.engine import autocommit_reads, read_transaction, write_transaction
from archive.index.patients import PatientConflict, patient_conflicts
from archive.index.queries import InstanceRow, Query
from archive.index.retrieve import RetrievableInstance, RetrieveKeys, retrievable_instances
from archive.index.writes import StoredInstance, find_instance
from archive.ingest import CommitCheck
from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique
from archive.retag import rule_classifications
from archive.store import FileStore, hash_file

if TYPE_CHECKING:
    from archive.rules import RuleSet

logger = logging.getLogger("archive.archive")


class IndexStore:
    """Read and tag the indexed instances of one archive: :attr:`archive.archive.Archive.index`.

    Parameters
    ----------
    engine : Engine
        The index.
    store : FileStore
        The file store (``tag --clear`` re-reads stored headers).
    rules : RuleSet or None
        The archive's rules (``None``: the default rules), for ``tag --clear``.
    """

    def __init__(self, engine: Engine, store: FileStore, rules: RuleSet | None) -> None:
        self.engine = engine
        self.store = store
        self._rules = rules

    # -- queries and tags --------------------------------------------------------------------------

    def find(self, query: Query) -> list[InstanceRow]:
        """Instances matching ``query`` (see :func:`archive.index.queries.find`)."""
        with autocommit_reads(self.engine) as connection:
            return queries.find(connection, query)

    def resolve_uid(self, text: str) -> str:
        """The study, series or instance UID ``text`` names: itself or the one UID it is a prefix of.

        Raises
        ------
        ArchiveError
            If no UID, or several, start with ``text``.
        """
        with read_transaction(self.engine) as connection:
            try:
                return uid_lookup.resolve_uid_prefix(connection, text)
            except LookupError as exc:
                raise ArchiveError(str(exc)) from exc

    def show(self, uid: str) -> UidDescription | None:
        """The study, series or instance with this UID, or ``None``."""
        with read_transaction(self.engine) as connection:
            return describe.describe_uid(connection, uid)

    def patient_conflicts(self) -> list[PatientConflict]:
        """Every study whose instances disagree on the patient (see :mod:`archive.index.patients`)."""
        with read_transaction(self.engine) as connection:
            return patient_conflicts(connection)

    def stats(self) -> dict[str, Any]:
        """Counts, sizes and counts by procedure attribute (JSON-ready)."""
        with read_transaction(self.engine) as connection:
            return describe.stats(connection)

    def tag(
        self,
        uid: str,
        *,
        user: str,
        levels: tuple[SpinalLevel, ...] | None = None,
        side: Side | None = None,
        technique: Technique | None = None,
        approach: Approach | None = None,
        procedure_type: ProcedureType | None = None,
        note: str | None = None,
        clear: frozenset[str] = frozenset(),
    ) -> list[tags.TagChange]:
        """Set procedure attributes by hand on every instance a UID denotes (see :mod:`archive.index.tags`).

        ``clear`` names attributes (``levels``, ``side``, ``technique``,
        ``approach``, ``procedure_type``) to return to what the rules derive
        from the stored header now.

        Returns
        -------
        list of TagChange
            The changes made (empty if everything already had these values).

        Raises
        ------
        ArchiveError
            If the index has no study, series or instance with ``uid``.
        """
        edit = tags.TagEdit(
            levels=levels,
            side=side,
            technique=technique,
            approach=approach,
            procedure_type=procedure_type,
            clear=clear,
        )
        derived: dict[int, Any] | None = None
        if clear:
            edit.check()
            with read_transaction(self.engine) as connection:
                pks = describe.instance_pks_under(connection, uid)
                derived = rule_classifications(connection, self.store, pks, self._rules)
        with write_transaction(self.engine) as connection:
            return tags.tag_uid(
                connection, uid, edit, user=user, note=note, now=datetime.now(UTC), derived=derived
            )

    def iter_index(self, batch: int = 2000) -> Iterator[StoredInstance]:
        """Every indexed instance's file facts (for verification), in id order, read in batches.

        Each batch is read in its own short transaction, so a long verification
        never holds a read snapshot open.
        """
        table = schema.instance
        columns = (table.c.id, table.c.sop_instance_uid, table.c.sop_class_uid, table.c.path, table.c.sha256)
        last = 0
        while True:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(*columns, table.c.size).where(table.c.id > last).order_by(table.c.id).limit(batch)
                ).all()
            if not rows:
                return
            for r in rows:
                yield StoredInstance(r.id, r.sop_instance_uid, r.sop_class_uid, r.path, r.sha256, r.size)
            last = rows[-1].id

    def check_commitment(self, sop_class_uid: str, sop_instance_uid: str) -> CommitCheck:
        """Whether an instance is durably stored: indexed, same SOP class, file hash as recorded.

        Parameters
        ----------
        sop_class_uid, sop_instance_uid : str
            From the Referenced SOP Sequence of an N-ACTION.

        Returns
        -------
        CommitCheck
        """
        with self.engine.connect() as connection:
            existing = find_instance(connection, sop_instance_uid)
        if existing is None:
            return CommitCheck.NO_SUCH_INSTANCE
        if existing.sop_class_uid != sop_class_uid:
            return CommitCheck.CLASS_MISMATCH
        try:
            digest, size = hash_file(self.store.absolute(existing.path))
        except OSError as exc:
            logger.error("commitment check of %s: cannot read its file: %s", sop_instance_uid, exc)
            return CommitCheck.HASH_MISMATCH
        if digest != existing.sha256 or size != existing.size:
            logger.error("commitment check of %s: file hash differs from the index", sop_instance_uid)
            return CommitCheck.HASH_MISMATCH
        return CommitCheck.COMMITTED

    def retrievable(self, keys: RetrieveKeys, *, limit: int) -> list[RetrievableInstance]:
        """The instances a retrieve names (see :mod:`archive.index.retrieve`), with absolute paths.

        Parameters
        ----------
        keys : RetrieveKeys
            The unique keys of the retrieve identifier.
        limit : int
            At most this many instances.

        Returns
        -------
        list of RetrievableInstance
        """
        with autocommit_reads(self.engine) as connection:
            found = retrievable_instances(connection, keys, limit)
        return [item._replace(path=str(self.store.absolute(item.path))) for item in found]
