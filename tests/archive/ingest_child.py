"""Child process for the crash and concurrency tests: ingest files, one result line each.

Usage: python ingest_child.py DATA_DIR DB_URL [--go FILE] [--policy P] [--group N] PATH...

Prints ``ready`` once the archive is open, waits (polling) until ``--go FILE``
exists if given, then prints ``<outcome> <code> <sop uid> <path>`` per file
(with ``--group N``: ingested with ``ingest_many`` in groups of N).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from archive.archive import Archive
from archive.ingest import Origin
from archive.settings import ArchiveSettings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("db_url")
    parser.add_argument("--go", type=Path)
    parser.add_argument("--policy", default="keep-first")
    parser.add_argument("--group", type=int, default=1)
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    settings = ArchiveSettings(args.data_dir, args.db_url, duplicate_policy=args.policy)
    with Archive.open(settings) as archive:
        print("ready", flush=True)
        if args.go is not None:
            deadline = time.monotonic() + 120
            while not args.go.exists():
                if time.monotonic() > deadline:
                    print("no go signal", file=sys.stderr)
                    return 2
                time.sleep(0.005)
        for start in range(0, len(args.paths), args.group):
            group = args.paths[start : start + args.group]
            origins = [Origin("file", path=str(path)) for path in group]
            if args.group == 1:
                results = [archive.ingest(group[0], origin=origins[0])]
            else:
                results = archive.ingest_many(group, origins=origins)
            for path, result in zip(group, results, strict=True):
                code = result.code.value if result.code else "-"
                print(f"{result.outcome.value} {code} {result.sop_instance_uid} {path}", flush=True)
                if result.code is not None and result.code.value in ("storage-error", "out-of-resources"):
                    print(result.reason, file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
