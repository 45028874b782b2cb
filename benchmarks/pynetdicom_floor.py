"""The least a receiver built on pynetdicom does: answer every C-STORE with Success, store nothing.

Usage::

    python -m benchmarks.pynetdicom_floor AE_TITLE PORT [memory|file]

pynetdicom as shipped (its own loops and defaults, maximum PDU unlimited like
``usarchive serve``) accepting every storage SOP class in every transfer
syntax on ``127.0.0.1:PORT``. Data sets are received in memory (pynetdicom's
default, faster for small ones) or, with ``file``, streamed to a temporary
file as ``usarchive serve`` does (``STORE_RECV_CHUNKED_DATASET``, often
faster for clips); either way the handler never looks at them.
``bench_receive`` measures it beside the real receivers: what no receiver
built on pynetdicom can beat without replacing parts of pynetdicom.
"""

from __future__ import annotations

import sys

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification


def _success(event: Event) -> int:
    return 0x0000


def main() -> None:
    """Serve on the given AE title and port until killed."""
    if len(sys.argv) > 3 and sys.argv[3] == "file":
        _config.STORE_RECV_CHUNKED_DATASET = True
    ae = AE(ae_title=sys.argv[1])
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = 0
    ae.start_server(("127.0.0.1", int(sys.argv[2])), evt_handlers=[(evt.EVT_C_STORE, _success)])


if __name__ == "__main__":
    main()
