"""Child process of the outbox crash test: ingest files with two routes configured, one line per result.

Usage: python forward_ingest_child.py DATA_DIR DB_URL GROUP PATH...

Prints ``ready`` once the archive is open, then ``<outcome> <sop uid>`` per file
(GROUP > 1: ingested with ``ingest_many`` in groups of GROUP).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType

from archive.archive import Archive
from archive.forward.config import Destination, ForwardSettings, Route
from archive.ingest import Origin
from archive.settings import ArchiveSettings

#: The routes of the crash test: every instance goes to PACS (by study) and to BACKUP (L4, by instance).
FORWARD = ForwardSettings(
    destinations=MappingProxyType(
        {
            "PACS": Destination("PACS", "PACS", "127.0.0.1", 104),
            "BACKUP": Destination("BACKUP", "BACKUP", "127.0.0.1", 105),
        }
    ),
    routes=(Route("PACS", delay_s=5.0), Route("BACKUP", level=frozenset({"L4"}), granularity="instance")),
)


def main() -> int:
    data_dir, db_url, group = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    paths = [Path(p) for p in sys.argv[4:]]
    with Archive.open(ArchiveSettings(data_dir, db_url, forward=FORWARD)) as archive:
        print("ready", flush=True)
        for start in range(0, len(paths), group):
            chunk = paths[start : start + group]
            origins = [Origin("file", path=str(path)) for path in chunk]
            if group == 1:
                results = [archive.ingest(chunk[0], origin=origins[0])]
            else:
                results = archive.ingest_many(chunk, origins=origins)
            for result in results:
                print(f"{result.outcome.value} {result.sop_instance_uid}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
