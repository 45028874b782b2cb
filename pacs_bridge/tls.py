"""TLS contexts from the ``[tls]`` section: the receiver's, and the one toward a destination.

One certificate identifies this node both ways: the receiver presents it to
the peers that connect, and forwarding and C-MOVE present it to a destination
with ``tls = true`` (DICOM TLS, PS3.15 B.1, is usually mutual). The ``[tls]``
CA bundle verifies clients on the receiving side and is trusted, besides the
system's CAs, for a destination's certificate: a hospital PACS certificate is
typically signed by the hospital's own CA.
"""

from __future__ import annotations

import ssl

from pacs_bridge.config import TLSSettings


def server_context(tls: TLSSettings) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later) from the configured PEM files.

    Parameters
    ----------
    tls : TLSSettings
        Certificate and key; when ``tls.ca`` is set, clients must present a
        certificate signed by it.

    Returns
    -------
    ssl.SSLContext
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=tls.certificate, keyfile=tls.key)
    if tls.ca is not None:
        context.load_verify_locations(cafile=tls.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_context(tls: TLSSettings | None) -> ssl.SSLContext:
    """A client-side TLS context toward a destination (TLS 1.2 or later, certificate and host verified).

    Parameters
    ----------
    tls : TLSSettings or None
        The ``[tls]`` section: its certificate and key are presented to the
        destination and its CA bundle (if any) is trusted besides the system's.
        ``None``: no client certificate, the system's CAs only.

    Returns
    -------
    ssl.SSLContext
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None:
        context.load_cert_chain(certfile=tls.certificate, keyfile=tls.key)
        if tls.ca is not None:
            context.load_verify_locations(cafile=tls.ca)
    return context


__all__ = ["client_context", "server_context"]
