"""The archive: a durable file store plus its index, and the one way in (:meth:`Archive.ingest`).

Ingest of one instance, in order:

1. the offered bytes are made durable in the store's filesystem: copied into
   ``store/.tmp`` (or, with ``move=True`` on the same filesystem, fsynced where
   they are), hashed (SHA-256) on the way; a bare network dataset gets a
   preamble and file meta first (:func:`archive.dicom_header.build_file_meta`);
2. the staged file is validated and its header read, never its pixels
   (:func:`archive.dicom_header.read_header`); a rejection removes the staged copy;
3. the rules classify level, side, technique and procedure type (a failure of
   the rules is logged and never loses the instance);
4. in one write transaction: the instance row is inserted (the *claim* of its
   SOP Instance UID), the forwarding tasks of the routes it matches are
   inserted (the outbox, :mod:`archive.forward.sql`), the staged file is renamed
   into place and its directory fsynced, and the transaction commits. A process killed before the commit
   leaves at most a file without a row, which ``verify --repair`` indexes;
   never a row without its file.

The same SOP Instance UID again: the same data set (whatever its file meta)
is a ``DUPLICATE`` and changes nothing; a different data set follows
:class:`~archive.ingest.DuplicatePolicy`
(option ``duplicate_policy`` of the settings), decided in :mod:`archive.duplicates`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from pydicom.uid import AllTransferSyntaxes
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from archive.dicom_header import InstanceHeader, build_file_meta, peek_bare_dataset, read_header
from archive.domains import ArchiveDomains
from archive.duplicates import Decision, Prepared, instance_result, resolve_existing
from archive.forward.config import ForwardSettings
from archive.forward.routes import RouteFacts
from archive.forward.sql import enqueue_routed
from archive.index import schema
from archive.index.engine import (
    create_index_engine,
    is_lock_error,
    write_transaction,
)
from archive.index.items import backfill_items, write_items
from archive.index.migrations import migrate
from archive.index.queries import InstanceRow, Query
from archive.index.store import IndexStore
from archive.index.writes import (
    claim_instance,
    find_instance,
    insert_classification,
    instance_row_values,
    upsert_hierarchy,
)
from archive.ingest import (
    CommitCheck,
    DuplicatePolicy,
    IngestOutcome,
    IngestRejectedError,
    IngestResult,
    Origin,
    RejectCode,
)
from archive.ingest_checks import check_trusted_inputs, storage_failure
from archive.placement import take_back_uncommitted
from archive.settings import ArchiveSettings, archive_not_found, missing_archive_reason, redact_url
from archive.store import (
    FileStore,
    StagedFile,
    relative_path,
    sync_directories,
    sync_files,
)

__all__ = [
    "Archive",
    "CommitCheck",
    "DuplicatePolicy",
    "IngestOutcome",
    "IngestResult",
    "InstanceRow",
    "Origin",
    "Query",
    "RejectCode",
]

if TYPE_CHECKING:
    from archive.rules import Classification, RuleSet

logger = logging.getLogger(__name__)


class Archive(ArchiveDomains):
    """An open archive: file store under ``settings.data_dir / "store"`` and its index.

    Use :meth:`open`; the object is a context manager and safe to share between
    threads. Several processes may open the same archive at once.
    """

    def __init__(self, settings: ArchiveSettings, engine: Engine, store: FileStore) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        # Series known to be committed in the index: skips three upserts per instance of a
        # series already seen (series rows are never deleted).
        self._known_series: dict[str, tuple[int, date]] = {}
        self._known_series_lock = threading.Lock()
        self.duplicate_policy: DuplicatePolicy = settings.duplicate_policy
        self._forward_settings: ForwardSettings = settings.forward
        self._rules: RuleSet | None = None
        if settings.rules_path is not None or settings.rule_modalities:
            from archive.rules import default_rules, load_rules

            rules = load_rules(settings.rules_path) if settings.rules_path is not None else default_rules()
            if settings.rule_modalities:  # [archive] rule_modalities wins over the rules file's own
                rules = dataclasses.replace(rules, modalities=frozenset(settings.rule_modalities))
            self._rules = rules
        self._index = IndexStore(engine, store, self._rules)

    @classmethod
    def open(cls, settings: ArchiveSettings, *, create: bool = True) -> Archive:
        """Open the archive ``settings`` describe, migrating its index.

        Parameters
        ----------
        settings : ArchiveSettings
            Data directory, index URL and behaviour.
        create : bool
            Create the store and index when missing (``usarchive init``, tests). The
            commands pass ``False``, so a mistyped path is refused instead of becoming a
            new, empty archive.

        Returns
        -------
        Archive

        Raises
        ------
        ArchiveNotFoundError
            If ``create`` is false and the data directory or the index holds no archive.
        ConfigError
            If a setting is invalid (e.g. the rules file).
        ArchiveError
            If the index was written by a newer usarchive.
        """
        if not create:
            missing = missing_archive_reason(settings)
            if missing is not None:
                raise archive_not_found(settings, missing)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = FileStore(settings.data_dir / "store")
        engine = create_index_engine(settings.resolved_db_url)
        try:
            if not create and not inspect(engine).has_table(schema.schema_version.name):
                raise archive_not_found(
                    settings, f"the index {redact_url(settings.resolved_db_url)} has no tables"
                )
            migrate(engine)
            backfill_items(engine, store.absolute)  # once, for instances indexed before migration 12
            return cls(settings, engine, store)
        except BaseException:
            engine.dispose()
            raise

    @staticmethod
    def exists(settings: ArchiveSettings) -> bool:
        """Whether the data directory holds an archive's store (and, when embedded, its index)."""
        return missing_archive_reason(settings) is None

    @property
    def staging_dir(self) -> Path:
        """A directory on the store's filesystem for files to ingest with ``move=True``."""
        return self.store.staging_dir

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- ingest ---------------------------------------------------------------------------------

    def ingest(
        self,
        source: Path | bytes,
        *,
        origin: Origin,
        transfer_syntax: str | None = None,
        move: bool = False,
        sha256: str | None = None,
        header: InstanceHeader | None = None,
    ) -> IngestResult:
        """Store one instance durably and index it; the only way a file enters the archive.

        Parameters
        ----------
        source : Path or bytes
            A Part 10 file (preamble, ``DICM``, file meta, dataset) or, when
            ``transfer_syntax`` is given, a bare dataset encoded in it, to
            which the archive prepends preamble and file meta.
        origin : Origin
            Recorded with the instance.
        transfer_syntax : str, optional
            Set for bare datasets (the network case).
        move : bool
            The caller's file may be renamed into the store (same filesystem,
            e.g. under :attr:`staging_dir`); otherwise it is copied. A file
            that is not stored is left where it was.
        sha256 : str, optional
            SHA-256 (64 lowercase hex digits) of exactly the bytes of the file
            ``source``, computed by a trusted caller that saw every byte (the
            network receiver hashes while it spools). A file staged in place
            (``move=True``, same filesystem) is then not re-read: the digest is
            recorded as given, and only ``usarchive verify`` or a storage
            commitment check, which re-hash the stored file, would notice a
            wrong one. A copied file is hashed anyway and is rejected
            (``STORAGE_ERROR``) when its digest differs.
        header : InstanceHeader, optional
            What :func:`archive.dicom_header.read_header` returned for exactly
            the file ``source``, for a caller that had to read the header
            anyway (the network receiver compares the data set's UIDs with the
            C-STORE request). It is trusted like ``sha256``: ingest indexes and
            classifies it without parsing the file again. A caller whose
            ``read_header`` raised passes nothing and lets ingest reject the
            file.

        Returns
        -------
        IngestResult
            Never raises for bad input or storage failures: those are
            ``REJECTED`` with a reason and a :class:`RejectCode`.

        Raises
        ------
        ValueError
            If ``sha256`` is not 64 lowercase hex digits, or ``sha256`` or
            ``header`` is given with ``transfer_syntax`` or bytes (whose stored
            bytes the caller did not read).
        """
        check_trusted_inputs(source, transfer_syntax, sha256, header)
        staged: StagedFile | None = None
        decision: Decision | None = None
        try:
            staged = self._stage(source, origin, transfer_syntax, move, sha256=sha256)
            if header is None:
                header = read_header(staged.path)
            decision = self._commit(Prepared(header, staged, origin, self._classify(header)))
            self._remember_series(decision)
            if decision.remove_after_commit:
                self.store.remove(decision.remove_after_commit)
            return decision.result
        except IngestRejectedError as rejection:
            return rejection.to_result(
                sha256=staged.sha256 if staged else None, size=staged.size if staged else None
            )
        except OSError as exc:
            return storage_failure(origin, exc)
        except SQLAlchemyError as exc:
            if is_lock_error(exc):
                logger.warning(
                    "index busy: locked by another writer; instance from %s not stored", origin.describe()
                )
                return IngestResult(
                    outcome=IngestOutcome.REJECTED,
                    sop_instance_uid=None,
                    sop_class_uid=None,
                    reason="index busy: locked by another writer for too long; nothing stored; send again",
                    code=RejectCode.STORAGE_ERROR,
                )
            logger.exception("index write failed for an instance from %s", origin.describe())
            return IngestResult(
                outcome=IngestOutcome.REJECTED,
                sop_instance_uid=None,
                sop_class_uid=None,
                reason=f"index database failed: {type(exc).__name__}: {exc}; nothing was stored; "
                "check the database and send again",
                code=RejectCode.STORAGE_ERROR,
            )
        finally:
            if staged is not None and (decision is None or not decision.placed):
                self.store.discard(staged)

    def ingest_many(self, sources: Sequence[Path], *, origins: Sequence[Origin]) -> list[IngestResult]:
        """Ingest several files with one fsync pass and one index transaction (group commit).

        Same checks, outcomes and crash guarantees as :meth:`ingest`, for files
        that are copied (never moved): all staged copies are fsynced together,
        then one write transaction claims and places them (in SOP Instance UID
        order), fsyncs each touched directory once and commits. If the batch
        transaction fails, each remaining file is ingested on its own.

        Parameters
        ----------
        sources : sequence of Path
            Part 10 files.
        origins : sequence of Origin
            One per source.

        Returns
        -------
        list of IngestResult
            In the order of ``sources``.
        """
        results: dict[int, IngestResult] = {}
        prepared: dict[int, Prepared] = {}
        # Ctrl-C while staging or after the commit: no staged copy is left in .tmp
        with self.store.temps_removed_on_interrupt():
            try:
                self._prepare_many(sources, origins, prepared, results)
            except BaseException:
                for item in prepared.values():
                    self.store.discard(item.staged)
                raise
            return self._commit_many(sources, origins, prepared, results)

    def _prepare_many(
        self,
        sources: Sequence[Path],
        origins: Sequence[Origin],
        prepared: dict[int, Prepared],
        results: dict[int, IngestResult],
    ) -> None:
        for index, (source, origin) in enumerate(zip(sources, origins, strict=True)):
            staged: StagedFile | None = None
            try:
                staged = self._stage(source, origin, None, False, sync=False)
                header = read_header(staged.path)
                prepared[index] = Prepared(header, staged, origin, self._classify(header), sync=False)
            except IngestRejectedError as rejection:
                results[index] = rejection.to_result(sha256=staged.sha256 if staged else None)
            except OSError as exc:
                results[index] = storage_failure(origin, exc)
            finally:
                if index not in prepared and staged is not None:
                    self.store.discard(staged)

    def _commit_many(
        self,
        sources: Sequence[Path],
        origins: Sequence[Origin],
        prepared: dict[int, Prepared],
        results: dict[int, IngestResult],
    ) -> list[IngestResult]:
        decisions: dict[int, Decision] = {}
        try:
            sync_files(item.staged.path for item in prepared.values())
            with write_transaction(self.engine) as connection:
                for index, item in sorted(prepared.items(), key=lambda pair: pair[1].header.sop_instance_uid):
                    try:
                        decisions[index] = self._decide(connection, item)
                    except IngestRejectedError as rejection:
                        decisions[index] = Decision(
                            rejection.to_result(sha256=item.staged.sha256), placed=False
                        )
                sync_directories(
                    d.result.path.parent for d in decisions.values() if d.placed and d.result.path
                )
        except BaseException as exc:
            self._unplace(list(prepared.values()))
            if not isinstance(exc, (OSError, SQLAlchemyError)):
                for item in prepared.values():
                    self.store.discard(item.staged)
                raise
            logger.warning(
                "group ingest of %d files failed (%s); ingesting them one by one", len(prepared), exc
            )
            for index, item in prepared.items():
                self.store.discard(item.staged)
                results[index] = self.ingest(sources[index], origin=origins[index])
            return [results[index] for index in range(len(sources))]
        for index, decision in decisions.items():
            if decision.remove_after_commit:
                self.store.remove(decision.remove_after_commit)
            if not decision.placed:
                self.store.discard(prepared[index].staged)
            results[index] = decision.result
            self._remember_series(decision)
        return [results[index] for index in range(len(sources))]

    def _stage(
        self,
        source: Path | bytes,
        origin: Origin,
        transfer_syntax: str | None,
        move: bool,
        *,
        sync: bool = True,
        sha256: str | None = None,
    ) -> StagedFile:
        if transfer_syntax is None:
            if isinstance(source, bytes):
                return self.store.stage_stream([source], None, sync=sync)
            if not source.is_file():
                raise IngestRejectedError(RejectCode.NOT_DICOM, f"expected a file, but {source} is not one")
            staged = self.store.stage_file(source, move=move, sync=sync, sha256=sha256)
            if sha256 is not None and staged.sha256 != sha256:
                self.store.discard(staged)
                raise IngestRejectedError(
                    RejectCode.STORAGE_ERROR,
                    f"expected the file to have the SHA-256 its sender computed ({sha256[:16]}…), but its "
                    f"bytes hash to {staged.sha256[:16]}…; it changed after it was hashed; send it again",
                )
            return staged
        if transfer_syntax not in AllTransferSyntaxes:
            raise IngestRejectedError(
                RejectCode.UNKNOWN_TRANSFER_SYNTAX,
                f"transfer syntax {transfer_syntax!r} is not one this archive knows",
            )
        if isinstance(source, bytes):
            return self._stage_bare(io.BytesIO(source), transfer_syntax, origin)
        with source.open("rb") as handle:
            return self._stage_bare(handle, transfer_syntax, origin)

    def _stage_bare(self, handle: BinaryIO, transfer_syntax: str, origin: Origin) -> StagedFile:
        ds = peek_bare_dataset(handle, transfer_syntax)
        sop_class = str(ds.get("SOPClassUID", "")).strip()
        sop_instance = str(ds.get("SOPInstanceUID", "")).strip()
        if not sop_class or not sop_instance:
            raise IngestRejectedError(
                RejectCode.MISSING_ATTRIBUTE,
                "expected SOP Class UID (0008,0016) and SOP Instance UID (0008,0018) in the dataset, "
                f"but got {sop_class or 'none'!r} and {sop_instance or 'none'!r}",
                sop_instance_uid=sop_instance or None,
                sop_class_uid=sop_class or None,
            )
        meta = build_file_meta(sop_class, sop_instance, transfer_syntax, origin.calling_ae)
        return self.store.stage_stream([meta], handle)

    def _study_modalities(self, study_uid: str) -> list[str]:
        """Modalities of the series already indexed in the study ``study_uid``."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(schema.series.c.modality)
                .join(schema.study, schema.series.c.study_pk == schema.study.c.id)
                .where(schema.study.c.study_instance_uid == study_uid)
                .distinct()
            ).scalars()
            return [str(m) for m in rows if m]

    def _classify(self, header: InstanceHeader) -> Classification | None:
        try:
            from archive.rules import classify, default_rules, in_scope

            rules = self._rules if self._rules is not None else default_rules()
            # The index is asked for the study's modalities only for an instance of another
            # modality (an SR in an ultrasound study); an ultrasound clip is in scope by itself.
            study: list[str] = []
            if not in_scope(header.dataset, rules):
                study = self._study_modalities(header.study_instance_uid)
            found = classify(header.dataset, rules, study_modalities=study)
        except Exception:  # a bug in the rules must never lose an instance
            logger.exception("rules failed on %s; storing it unclassified", header.sop_instance_uid)
            found = None
        from archive.worklist.classify import worklist_classification  # ranked above the rules

        return worklist_classification(self.engine, header.dataset, found)

    def _row_values(
        self, header: InstanceHeader, staged: StagedFile, origin: Origin, path: str
    ) -> dict[str, Any]:
        return {
            "sop_class_uid": header.sop_class_uid,
            "path": path,
            "size": staged.size,
            "sha256": staged.sha256,
            "transfer_syntax": header.transfer_syntax,
            "received_at": datetime.now(UTC),
            "source_kind": origin.kind,
            "source_path": origin.path,
            "calling_ae": origin.calling_ae,
            "called_ae": origin.called_ae,
            "source_address": origin.address,
            **instance_row_values(header.dataset),
        }

    def _remember_series(self, decision: Decision) -> None:
        if decision.series is None:
            return
        uid, series_pk, sort_date = decision.series
        with self._known_series_lock:
            if len(self._known_series) >= 10_000:
                self._known_series.clear()
            self._known_series[uid] = (series_pk, sort_date)

    def _commit(self, item: Prepared) -> Decision:
        try:
            with write_transaction(self.engine) as connection:
                return self._decide(connection, item)
        except BaseException:
            self._unplace([item])
            raise

    def _unplace(self, items: Sequence[Prepared]) -> None:
        take_back_uncommitted(self.engine, self.store, items)

    def _decide(self, connection: Any, item: Prepared) -> Decision:
        """Claim, place and index one instance inside the caller's write transaction."""
        header, staged = item.header, item.staged
        relative = relative_path(
            header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid
        )
        values = self._row_values(header, staged, item.origin, relative)
        with self._known_series_lock:
            known = self._known_series.get(header.series_instance_uid)
        # With the series known nothing is written before the claim, so the claim itself is the
        # lookup (a taken UID inserts nothing); otherwise look first, so that an offered duplicate
        # never creates patient/study/series rows.
        existing = None if known else find_instance(connection, header.sop_instance_uid)
        if existing is None:
            # On PostgreSQL a concurrent claimer can win after our check: a savepoint then undoes
            # the patient/study/series rows this attempt created (SQLite writers are serialised).
            savepoint = (
                connection.begin_nested()
                if known is None and connection.dialect.name == "postgresql"
                else None
            )
            series_pk, sort_date = known or upsert_hierarchy(
                connection, header.dataset, header.study_instance_uid, header.series_instance_uid
            )
            keys = {"sop_instance_uid": header.sop_instance_uid, "series_pk": series_pk}
            pk = claim_instance(connection, {**keys, "sort_date": sort_date, **values})
            if savepoint is not None:
                (savepoint.commit if pk is not None else savepoint.rollback)()
            if pk is not None:
                insert_classification(connection, pk, item.classification, values["received_at"], sort_date)
                write_items(connection, pk, header.dataset)
                self._enqueue_forwarding(connection, item, values["received_at"])
                final = self.store.place(staged, relative, sync=item.sync)
                return Decision(
                    instance_result(IngestOutcome.STORED, header, staged, final),
                    placed=True,
                    series=(header.series_instance_uid, series_pk, sort_date),
                )
            existing = find_instance(connection, header.sop_instance_uid)
            assert existing is not None, "a claimed SOP Instance UID has a row"
        decision = resolve_existing(connection, self.store, self.duplicate_policy, item, existing, values)
        if decision.result.outcome is IngestOutcome.REPLACED:
            self._enqueue_forwarding(connection, item, values["received_at"], replacing=True)
        return decision

    def _enqueue_forwarding(
        self, connection: Any, item: Prepared, now: datetime, *, replacing: bool = False
    ) -> None:
        """The outbox: the tasks of the routes the instance matches, in the transaction that indexes it."""
        enqueue_routed(
            connection,
            self._forward_settings.routes,
            RouteFacts.of_ingest(item.header, item.classification, item.origin),
            item.header,
            now=now,
            replacing=replacing,
        )

    def check_commitment(self, sop_class_uid: str, sop_instance_uid: str) -> CommitCheck:
        """Whether an instance is durably stored (:meth:`IndexStore.check_commitment`)."""
        return self._index.check_commitment(sop_class_uid, sop_instance_uid)
