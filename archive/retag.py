"""What the rules derive now for stored instances, for ``usarchive tag --clear``.

The stored file's header is read again (``stop_before_pixels``) and
classified with the archive's rules, then with its worklist entry when it
names one (:mod:`archive.worklist.classify`); an instance whose file cannot be read or
classified clears to "nothing found" (the rules' defaults), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pydicom
from sqlalchemy import Connection, select

from archive.index import schema
from archive.store import FileStore

logger = logging.getLogger(__name__)


def rule_classifications(
    connection: Connection, store: FileStore, pks: Sequence[int], rules: Any
) -> dict[int, Any]:
    """The rules' :class:`~archive.rules.Classification` of each instance id (``None`` when unreadable).

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Any connection to the index.
    store : FileStore
        Where the instances' files are.
    pks : sequence of int
        Instance ids.
    rules : RuleSet or None
        The archive's rules (``None``: the shipped defaults).

    Returns
    -------
    dict of int to Classification or None
    """
    from archive.rules import classify
    from archive.worklist.classify import applies_to, entry_of_instance, with_worklist

    table = schema.instance
    paths = dict(connection.execute(select(table.c.id, table.c.path).where(table.c.id.in_(list(pks)))).all())
    found: dict[int, Any] = {}
    for pk in pks:
        try:
            dataset = pydicom.dcmread(store.absolute(str(paths[pk])), stop_before_pixels=True)
            found[pk] = classify(dataset, rules)
            entry = entry_of_instance(connection, dataset)
            if entry is not None and applies_to(entry, dataset):
                found[pk] = with_worklist(found[pk], entry, dataset)
        except Exception as exc:  # an unreadable file clears to "nothing found"
            logger.warning("tag --clear: instance %d: rules could not be applied (%s)", pk, exc)
            found[pk] = None
    return found
