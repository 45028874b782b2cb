"""The uvicorn internals ``usarchive web`` relies on: version, source hashes, the fallback."""

from __future__ import annotations

import logging

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from archive.web import _uvicorn_compat as compat
from archive.web.limits import ConnectionLimits


def test_uvicorn_is_the_tested_minor_version() -> None:
    assert compat.tested(), (
        f"uvicorn {uvicorn.__version__} is installed but archive.web._uvicorn_compat was tested with "
        f"{compat.TESTED_MINOR}.x; re-check BoundedH11Protocol against h11_impl.py, then update "
        "TESTED_MINOR, the pin in pyproject.toml and PATCHED_SOURCES"
    )


def test_the_source_of_every_extended_method_is_unchanged() -> None:
    assert compat.changed_sources() == [], (
        f"changed in uvicorn {uvicorn.__version__}: compare with BoundedH11Protocol, adapt, then record "
        "the new hashes in PATCHED_SOURCES"
    )


def test_the_protocol_carries_the_limits_given() -> None:
    limits = ConnectionLimits(header_timeout_s=3, max_connections=7)
    protocol = compat.http_protocol(limits)
    assert issubclass(protocol, compat.BoundedH11Protocol)
    assert getattr(protocol, "limits") is limits  # noqa: B009


def test_an_untested_uvicorn_gets_the_stock_protocol_and_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(uvicorn, "__version__", "0.99.1")
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        protocol = compat.http_protocol(ConnectionLimits())
    assert protocol is H11Protocol
    assert "uvicorn 0.99.1 is not the tested" in caplog.text and "header_timeout_s" in caplog.text


def test_switched_off_the_stock_protocol_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        protocol = compat.http_protocol(ConnectionLimits(), enabled=False)
    assert protocol is H11Protocol
    assert "uvicorn_patches = false" in caplog.text
