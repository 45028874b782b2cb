"""Taking files back out of the store when their transaction did not commit (an error, Ctrl-C)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Engine, select

from archive.duplicates import Prepared
from archive.index import schema
from archive.store import FileStore, relative_path

logger = logging.getLogger(__name__)


def take_back_uncommitted(engine: Engine, store: FileStore, items: Sequence[Prepared]) -> None:
    """Undo the renames of a transaction that did not commit (an error, Ctrl-C).

    Each placed file whose path no committed index row names is renamed
    back to where it was staged (a copy in ``.tmp`` is then discarded; a
    caller's moved file is back where the caller had it), so an interrupted
    import leaves nothing that ``verify`` reports. Only a process killed
    outright (SIGKILL, power loss) can still leave a stray file, which
    ``verify --repair`` moves into place and indexes.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index, asked which of the items' paths are committed.
    store : FileStore
        Where the files were placed.
    items : sequence of Prepared
        The instances the failed transaction was deciding.
    """
    # A staged file that is no longer where it was staged has been renamed into the layout,
    # under the first version's name or a replacement's.
    moved = [item for item in items if not item.staged.path.exists()]
    if not moved:
        return
    try:
        with engine.connect() as connection:
            named = set(
                connection.execute(
                    select(schema.instance.c.path).where(
                        schema.instance.c.sop_instance_uid.in_(
                            [item.header.sop_instance_uid for item in moved]
                        )
                    )
                ).scalars()
            )
    except BaseException:
        logger.exception("cannot tell which placed files were committed; leaving them for verify")
        return
    for item in moved:
        header = item.header
        uids = (header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid)
        for relative in (relative_path(*uids), relative_path(*uids, sha256=item.staged.sha256)):
            final = store.absolute(relative)
            if relative in named or not final.exists():
                continue
            final.replace(item.staged.path)
            logger.warning("transaction interrupted: %s taken back out of the store", relative)
            break
