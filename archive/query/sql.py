"""The SQL of a :class:`~archive.query.request.FindRequest`: one row per entity at the query level.

The query reads the level's table joined *upwards* (instance → series →
study → patient), so each entity appears once however many instances it
has; keys below the level (relational queries, our procedure keys) become
one ``EXISTS`` over the entity's descendants, so that all of them must hold
for one descendant (one instance has both level L5 and technique OT).
Results are read in pages ordered by the entity's primary key (keyset
pagination: ``WHERE id > :after ORDER BY id LIMIT :page``): memory stays
bounded by the page size, and no transaction stays open while a slow peer
reads the responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, Table, and_, exists, func, literal, select

from archive.index import items, schema
from archive.query.keys import PATIENT_COMPUTED, Key, KeyKind, Level
from archive.query.matching import MatchSettings, combined_datetime_condition, condition
from archive.query.request import FindRequest, RequestedKey
from archive.query.sequences import SequenceQuery, item_conditions

_TABLES: dict[Level, Table] = {
    Level.PATIENT: schema.patient,
    Level.STUDY: schema.study,
    Level.SERIES: schema.series,
    Level.IMAGE: schema.instance,
}
_BY_NAME = {table.name: table for table in _TABLES.values()}
_PARENT_FK = {Level.STUDY: "patient_pk", Level.SERIES: "study_pk", Level.IMAGE: "series_pk"}
_LEVELS = list(Level)
_PROCEDURE_COLUMNS = ("side", "technique", "approach", "procedure_type")


def upward_from(level: Level) -> FromClause:
    """The level's table joined to its ancestors (one row per entity of ``level``)."""
    clause: FromClause = _TABLES[level]
    for depth in range(level.depth, 0, -1):
        child, parent = _LEVELS[depth], _LEVELS[depth - 1]
        clause = clause.join(_TABLES[parent], _TABLES[parent].c.id == _TABLES[child].c[_PARENT_FK[child]])
    return clause


def entity_of_instance(level: Level) -> tuple[FromClause, Any]:
    """``instance`` joined up to ``level``, and the expression giving each instance's entity id."""
    if level is Level.IMAGE:
        return schema.instance, schema.instance.c.id
    if level is Level.SERIES:
        return schema.instance, schema.instance.c.series_pk
    i, se, st = schema.instance, schema.series, schema.study
    clause: FromClause = i.join(se, se.c.id == i.c.series_pk)
    if level is Level.STUDY:
        return clause, se.c.study_pk
    return clause.join(st, st.c.id == se.c.study_pk), st.c.patient_pk


class CompiledQuery:
    """The conditions and columns of one request on one database dialect.

    Parameters
    ----------
    request : FindRequest
    settings : MatchSettings
    dialect : str
        ``connection.dialect.name``.
    """

    def __init__(self, request: FindRequest, settings: MatchSettings, dialect: str) -> None:
        self.request = request
        self.settings = settings
        self.dialect = dialect
        self.level = request.level
        self.entity = _TABLES[self.level]
        self.pk = self.entity.c.id
        self.conditions = self._conditions()
        self.columns: dict[int, Any] = {
            rk.tag: _BY_NAME[rk.key.table].c[rk.key.column]
            for rk in request.keys
            if rk.key is not None
            and rk.key.kind is KeyKind.INDEXED
            and rk.key.level.depth <= self.level.depth
        }

    def _condition(self, rk: RequestedKey, column: Any) -> ColumnElement[bool] | None:
        key = rk.key
        assert key is not None
        insensitive = key.kind is KeyKind.PROCEDURE or (
            key.vr == "PN" and not self.settings.case_sensitive_pn
        )
        return condition(
            column, key.vr, rk.value, keyword=key.keyword, dialect=self.dialect, insensitive=insensitive
        )

    def _conditions(self) -> list[ColumnElement[bool]]:
        request = self.request
        parts: list[ColumnElement[bool]] = []
        below: list[RequestedKey] = []
        procedure: list[RequestedKey] = []
        skip: set[str] = set()
        if request.combined_datetime and self.level.depth >= Level.STUDY.depth:
            combined = combined_datetime_condition(
                schema.study.c.study_date,
                schema.study.c.study_time,
                request.value_of("StudyDate"),
                request.value_of("StudyTime"),
            )
            if combined is not None:
                parts.append(combined)
                skip = {"StudyDate", "StudyTime"}
        for rk in request.matching:
            key = rk.key
            if key is None or key.keyword in skip:
                continue
            if key.kind is KeyKind.PROCEDURE:
                procedure.append(rk)
            elif key.kind is KeyKind.COMPUTED:
                parts.extend(self._modalities_condition(rk))
            elif key.level.depth > self.level.depth:
                below.append(rk)
            else:
                found = self._condition(rk, _BY_NAME[key.table].c[key.column])
                if found is not None:
                    parts.append(found)
        if below or procedure:
            parts.extend(self._descendants_condition(below, procedure))
        for rk in request.sequences:
            assert rk.sequence is not None
            parts.append(self._sequence_condition(rk.sequence))
        return parts

    def _sequence_condition(self, query: SequenceQuery) -> ColumnElement[bool]:
        # One of the entity's instances has an item matching every key of the query's item.
        instance, clause, entity = aliased_instances(self.level, "sq")
        item = items.sequence_item_value.alias("sq_item")
        clause = clause.join(item, item.c.instance_pk == instance.c.id)
        found = item_conditions(items.sequence_item_value, item, query, self.dialect)
        return exists(select(literal(1)).select_from(clause).where(entity == self.pk, *found))

    def _modalities_condition(self, rk: RequestedKey) -> list[ColumnElement[bool]]:
        # Modalities in Study (the one computed key that matches): a study with a series of any of them.
        series = schema.series.alias("m_modality_series")
        found = condition(
            series.c.modality, "CS", rk.value, keyword="ModalitiesInStudy", dialect=self.dialect
        )
        if found is None:
            return []
        if self.level is Level.PATIENT:
            study = schema.study.alias("m_modality_study")
            clause = series.join(study, study.c.id == series.c.study_pk)
            link = study.c.patient_pk == schema.patient.c.id
            return [exists(select(literal(1)).select_from(clause).where(link, found))]
        return [exists(select(literal(1)).where(series.c.study_pk == schema.study.c.id, found))]

    def _descendants_condition(
        self, below: Sequence[RequestedKey], procedure: Sequence[RequestedKey]
    ) -> list[ColumnElement[bool]]:
        deepest = max(
            [self.level, *(rk.key.level for rk in below if rk.key is not None)], key=lambda lv: lv.depth
        )
        if procedure:
            deepest = Level.IMAGE
        aliases: dict[str, Any] = {self.entity.name: self.entity}
        clause: FromClause | None = None
        links: list[ColumnElement[bool]] = []
        parent: Any = self.entity
        for depth in range(self.level.depth + 1, deepest.depth + 1):
            level = _LEVELS[depth]
            alias = _TABLES[level].alias(f"m_{_TABLES[level].name}")
            link = alias.c[_PARENT_FK[level]] == parent.c.id
            if clause is None:
                clause, links = alias, [link]
            else:
                clause = clause.join(alias, link)
            aliases[_TABLES[level].name] = alias
            parent = alias
        inner: list[ColumnElement[bool]] = []
        for rk in below:
            assert rk.key is not None
            found = self._condition(rk, aliases[rk.key.table].c[rk.key.column])
            if found is not None:
                inner.append(found)
        instance: Any = aliases.get(schema.instance.name)
        columns: list[tuple[RequestedKey, str]] = []
        for rk in procedure:
            assert rk.key is not None and instance is not None
            if rk.key.keyword == "levels":
                level_row = schema.instance_level.alias("m_level")
                found = self._condition(rk, level_row.c.level)
                if found is not None:
                    link = level_row.c.instance_pk == instance.c.id
                    inner.append(exists(select(literal(1)).where(link, found)))
            else:
                columns.append((rk, rk.key.keyword))
        if columns:
            proc = schema.instance_procedure.alias("m_procedure")
            link = proc.c.instance_pk == instance.c.id
            if clause is None:
                clause, links = proc, [link]
            else:
                clause = clause.join(proc, link)
            for rk, name in columns:
                found = self._condition(rk, proc.c[name])
                if found is not None:
                    inner.append(found)
        if clause is None:
            return inner  # IMAGE level, levels only: the EXISTS on instance_level is enough
        return [exists(select(literal(1)).select_from(clause).where(*links, *inner))]

    def page(self, after: int, size: int) -> Select[Any]:
        """The next ``size`` entities with an id above ``after``: their id, then :attr:`columns`."""
        columns = [
            self.pk.label("entity_pk"),
            *(column.label(f"k{tag:08x}") for tag, column in self.columns.items()),
        ]
        return (
            select(*columns)
            .select_from(upward_from(self.level))
            .where(*self.conditions, self.pk > after)
            .order_by(self.pk)
            .limit(size)
        )

    def ids(self, limit: int | None = None) -> Select[Any]:
        """The ids of the matching entities (at most ``limit``), in order."""
        statement = (
            select(self.pk).select_from(upward_from(self.level)).where(*self.conditions).order_by(self.pk)
        )
        return statement if limit is None else statement.limit(limit)

    def count_at_most(self, limit: int) -> Select[Any]:
        """How many entities match, counted up to ``limit`` (a bounded count, in no particular order)."""
        matching = select(self.pk).select_from(upward_from(self.level)).where(*self.conditions).limit(limit)
        return select(func.count()).select_from(matching.subquery())


def aliased_instances(level: Level, prefix: str) -> tuple[Any, FromClause, Any]:
    """``(instance alias, it joined up to level, the entity id expression)`` with aliases of ``prefix``.

    For subqueries correlated with (or beside) :func:`upward_from`, whose tables they must not reuse.
    """
    i = schema.instance.alias(f"{prefix}_i")
    if level is Level.IMAGE:
        return i, i, i.c.id
    if level is Level.SERIES:
        return i, i, i.c.series_pk
    se = schema.series.alias(f"{prefix}_se")
    clause: FromClause = i.join(se, se.c.id == i.c.series_pk)
    if level is Level.STUDY:
        return i, clause, se.c.study_pk
    st = schema.study.alias(f"{prefix}_st")
    return i, clause.join(st, st.c.id == se.c.study_pk), st.c.patient_pk


def sequence_item_query(level: Level, pks: Sequence[int], query: SequenceQuery, dialect: str) -> Select[Any]:
    """``(entity id, instance id, item)`` of the items of entities ``pks`` that match ``query``.

    Every item of the sequence when the query's item has no value to match.
    """
    instance, clause, entity = aliased_instances(level, "sr")
    item = items.sequence_item_value.alias("sr_item")
    clause = clause.join(item, item.c.instance_pk == instance.c.id)
    found = (
        item_conditions(items.sequence_item_value, item, query, dialect)
        if query.matched
        else [item.c.sequence == query.sequence.tag]
    )
    return (
        select(entity.label("entity_pk"), item.c.instance_pk, item.c.item)
        .select_from(clause)
        .where(entity.in_(pks), *found)
        .distinct()
    )


def sequence_value_query(instance_pks: Sequence[int], sequence_tag: int) -> Select[Any]:
    """Rows ``(instance id, item, nested, nested item, tag, value)`` of one sequence of some instances."""
    v = items.sequence_item_value
    return select(v.c.instance_pk, v.c.item, v.c.nested, v.c.nested_item, v.c.tag, v.c.value).where(
        v.c.instance_pk.in_(instance_pks), v.c.sequence == sequence_tag
    )


def procedure_value_query(level: Level, pks: Sequence[int], keys: Sequence[Key]) -> list[Select[Any]]:
    """Queries giving ``(entity id, value, name)`` rows of the procedure ``keys`` for entities ``pks``."""
    clause, entity = entity_of_instance(level)
    statements: list[Select[Any]] = []
    names = {key.keyword for key in keys}
    if "levels" in names:
        lv = schema.instance_level
        statements.append(
            select(entity.label("entity_pk"), lv.c.level.label("value"), literal("levels").label("name"))
            .select_from(clause.join(lv, lv.c.instance_pk == schema.instance.c.id))
            .where(entity.in_(pks))
            .distinct()
        )
    proc = schema.instance_procedure
    for name in _PROCEDURE_COLUMNS:
        if name in names:
            statements.append(
                select(entity.label("entity_pk"), proc.c[name].label("value"), literal(name).label("name"))
                .select_from(clause.join(proc, proc.c.instance_pk == schema.instance.c.id))
                .where(entity.in_(pks), proc.c[name].is_not(None))
                .distinct()
            )
    return statements


def _patient_count_query(keyword: str, level: Level, pks: Sequence[int]) -> Select[Any]:
    """A patient count (studies, series, instances) per entity: a patient, or a study (of its patient)."""
    st, se, i = schema.study, schema.series, schema.instance
    clause: FromClause = st
    if keyword != "NumberOfPatientRelatedStudies":
        clause = clause.join(se, se.c.study_pk == st.c.id)
    if keyword == "NumberOfPatientRelatedInstances":
        clause = clause.join(i, i.c.series_pk == se.c.id)
    entity: Any = st.c.patient_pk
    if level is Level.STUDY:  # Study Root: the count of the study's patient
        own = st.alias("c_own_study")
        clause = own.join(clause, st.c.patient_pk == own.c.patient_pk)
        entity = own.c.id
    return select(entity, func.count()).select_from(clause).where(entity.in_(pks)).group_by(entity)


def computed_query(keyword: str, pks: Sequence[int], level: Level | None = None) -> tuple[Select[Any], bool]:
    """The query of one computed key for entities ``pks``: rows ``(entity id, value)``.

    Parameters
    ----------
    keyword : str
        The computed key.
    pks : sequence of int
        Ids of entities of ``level``.
    level : Level, optional
        The entities' level (default: the key's own). Only the patient counts are
        answered at another level: STUDY, in the Study Root model
        (:func:`archive.query.keys.computed_level`).

    Returns
    -------
    tuple of (Select, bool)
        The statement and whether it gives a list of values (``True``) or one count per entity.
    """
    se, i = schema.series, schema.instance
    if keyword in PATIENT_COMPUTED:
        return _patient_count_query(keyword, level or Level.PATIENT, pks), False
    if keyword == "NumberOfStudyRelatedSeries":
        return select(se.c.study_pk, func.count()).where(se.c.study_pk.in_(pks)).group_by(
            se.c.study_pk
        ), False
    if keyword == "NumberOfStudyRelatedInstances":
        clause, entity = entity_of_instance(Level.STUDY)
        return select(entity, func.count()).select_from(clause).where(entity.in_(pks)).group_by(entity), False
    if keyword == "ModalitiesInStudy":
        statement = select(se.c.study_pk, se.c.modality).where(
            se.c.study_pk.in_(pks), se.c.modality.is_not(None)
        )
        return statement.distinct(), True
    if keyword == "SOPClassesInStudy":
        clause, entity = entity_of_instance(Level.STUDY)
        return select(entity, i.c.sop_class_uid).select_from(clause).where(entity.in_(pks)).distinct(), True
    if keyword == "NumberOfSeriesRelatedInstances":
        return select(i.c.series_pk, func.count()).where(i.c.series_pk.in_(pks)).group_by(
            i.c.series_pk
        ), False
    raise ValueError(f"computed_query: expected a computed key, but got {keyword!r}")


def representative_instances(level: Level, pks: Sequence[int]) -> Select[Any]:
    """``(entity id, path)`` of the first indexed instance of each entity (for header reads)."""
    clause, entity = entity_of_instance(level)
    first = (
        select(entity.label("entity_pk"), func.min(schema.instance.c.id).label("instance_pk"))
        .select_from(clause)
        .where(entity.in_(pks))
        .group_by(entity)
        .subquery()
    )
    return select(first.c.entity_pk, schema.instance.c.path).select_from(
        first.join(schema.instance, and_(schema.instance.c.id == first.c.instance_pk))
    )
