"""The pynetdicom internals the receiver relies on: versions, source hashes, patches undone at stop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynetdicom
import pytest
from pynetdicom import _config, dimse_messages, service_class

from pacs_bridge import _pynetdicom_compat as compat
from pacs_bridge.config import BridgeSettings
from pacs_bridge.server import BridgeServer


def test_pynetdicom_is_the_tested_minor_version() -> None:
    assert compat.pynetdicom_minor() == compat.TESTED_MINOR, (
        f"pynetdicom {pynetdicom.__version__} is installed but pacs_bridge._pynetdicom_compat was tested "
        f"with {compat.TESTED_MINOR}.x; re-check every patched function, then update TESTED_MINOR, the pin "
        "in pyproject.toml and PATCHED_SOURCES"
    )


@pytest.mark.parametrize("qualified_name", sorted(compat.PATCHED_SOURCES))
def test_the_source_of_every_patched_or_copied_function_is_unchanged(qualified_name: str) -> None:
    assert compat.source_hash(qualified_name) == compat.PATCHED_SOURCES[qualified_name], (
        f"{qualified_name} changed in pynetdicom {pynetdicom.__version__}: compare it with the copy or "
        "replacement in pacs_bridge (dul_loop, reactor, pdu_guard, access, spool, server), adapt, then "
        "record the new hash in PATCHED_SOURCES"
    )


def test_patches_are_in_place_while_serving_and_undone_at_stop(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings
) -> None:
    stock_factory = getattr(dimse_messages, "NamedTemporaryFile")  # noqa: B009
    stock_chunked = _config.STORE_RECV_CHUNKED_DATASET
    stock_encode = getattr(service_class, "encode")  # noqa: B009
    stock_logging = _config.LOG_RESPONSE_IDENTIFIERS
    first = start_bridge(bridge_settings)
    second = start_bridge(bridge_settings)
    assert getattr(dimse_messages, "NamedTemporaryFile") is not stock_factory  # noqa: B009
    assert _config.STORE_RECV_CHUNKED_DATASET is True
    assert getattr(service_class, "encode") is not stock_encode  # noqa: B009
    assert _config.LOG_RESPONSE_IDENTIFIERS is False
    first.stop()
    assert getattr(dimse_messages, "NamedTemporaryFile") is not stock_factory, "still one server running"  # noqa: B009
    second.stop()
    assert getattr(dimse_messages, "NamedTemporaryFile") is stock_factory  # noqa: B009
    assert stock_chunked == _config.STORE_RECV_CHUNKED_DATASET
    assert getattr(service_class, "encode") is stock_encode  # noqa: B009
    assert _config.LOG_RESPONSE_IDENTIFIERS is stock_logging


def test_an_untested_pynetdicom_runs_the_stock_loops_with_a_warning(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pynetdicom import AE

    monkeypatch.setattr(compat, "TESTED_MINOR", "0.0")
    caplog.set_level(logging.WARNING)
    server = start_bridge(bridge_settings)
    assert "is not the tested 0.0.x" in caplog.text
    ae = AE("SCANNER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000, "the stock loops still serve"
    assoc.release()


def test_the_receivers_loggers_are_its_own() -> None:
    from pacs_bridge import dul_loop, pdu_guard, reactor

    for module in (dul_loop, reactor, pdu_guard, compat):
        assert module.LOGGER.name.startswith("pacs_bridge."), module.LOGGER.name


def test_the_patches_can_be_turned_off(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pynetdicom import AE

    import pacs_bridge.server

    installed: list[object] = []
    monkeypatch.setattr(pacs_bridge.server, "use_waiting_dul", lambda *a, **k: installed.append(a))
    caplog.set_level(logging.WARNING)
    server = start_bridge(bridge_settings, pynetdicom_patches=False)
    assert "pynetdicom_patches = false" in caplog.text
    ae = AE("SCANNER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert installed == [], "no loop of ours was installed"


def _fake_association() -> tuple[Any, list[Any], list[Any]]:
    queued: list[Any] = []
    written: list[Any] = []
    dul = SimpleNamespace(send_pdu=queued.append, _send=written.append, socket=None)
    return SimpleNamespace(dul=dul), queued, written


def test_the_send_guard_counts_queued_p_data_until_the_dul_writes_it() -> None:
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import A_ABORT, P_DATA

    assoc, queued, written = _fake_association()
    assert compat.install_send_guard(assoc)
    guard = compat.send_guard(assoc)
    assert guard is not None
    assoc.dul.send_pdu(P_DATA())
    assoc.dul.send_pdu(A_ABORT())
    assert guard.pending == 1 and len(queued) == 2, "only P-DATA is counted; everything is queued"
    assoc.dul._send(P_DATA_TF())
    assert guard.pending == 0 and len(written) == 1
    assert compat.install_send_guard(assoc) and compat.send_guard(assoc) is guard, "installed once"


def test_without_the_guard_the_fast_sender_declines(tmp_path: Path) -> None:
    assoc, _, _ = _fake_association()
    assert compat.fast_send_c_store(assoc, tmp_path / "any.dcm") is None


def test_an_untested_pynetdicom_gets_no_send_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "TESTED_MINOR", "0.0")
    assoc, _, _ = _fake_association()
    assert not compat.install_send_guard(assoc)
    assert compat.send_guard(assoc) is None


def test_each_association_gets_its_own_copy_of_the_servers_contexts_without_a_deep_copy(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings
) -> None:
    import copy

    server = start_bridge(bridge_settings)
    templates = server._server.contexts if server._server is not None else []
    assert isinstance(templates, compat._ContextTemplates)
    copies = copy.deepcopy(templates)
    assert type(copies) is list and len(copies) == len(templates) > 100
    for template, context in zip(templates, copies, strict=True):
        assert context is not template and vars(context) == vars(template)
        assert context.transfer_syntax is not template.transfer_syntax
    copies[0].transfer_syntax.append("1.2.3")
    copies[0].context_id = 7
    assert "1.2.3" not in templates[0].transfer_syntax and templates[0].context_id is None


def test_contexts_of_another_shape_keep_pynetdicoms_deep_copy() -> None:
    from pynetdicom.presentation import build_context

    context = build_context("1.2.840.10008.1.1")
    context.extra = ["not a pynetdicom 3.0 attribute"]  # type: ignore[attr-defined]
    server = SimpleNamespace(contexts=[context])
    compat.use_cheap_context_copies(server)
    assert type(server.contexts) is list


def test_the_patched_encode_gives_pynetdicoms_bytes_and_hands_the_rest_to_it() -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from pacs_bridge._pynetdicom_compat import _encoder

    stock = getattr(service_class, "encode")  # noqa: B009
    calls: list[object] = []

    def counting(*args: object) -> bytes | None:
        calls.append(args[0])
        return stock(*args)  # type: ignore[no-any-return]

    encode = _encoder(counting)
    flat = Dataset()
    flat.PatientID = "P1"
    nested = Dataset()
    nested.ReferencedStudySequence = Sequence([flat])
    assert encode(flat, True, True) == stock(flat, True, True)
    assert calls == []
    assert encode(nested, False, True) == stock(nested, False, True)
    assert calls == [nested]
