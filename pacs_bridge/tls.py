"""TLS contexts from the ``[tls]`` section: the receiver's, and the one toward a destination.

One certificate identifies this node both ways: the receiver presents it to
the peers that connect, and forwarding and C-MOVE present it to a destination
with ``tls = true`` (DICOM TLS, PS3.15 B.1, is usually mutual). The ``[tls]``
CA bundle verifies clients on the receiving side and is trusted, besides the
system's CAs, for a destination's certificate: a hospital PACS certificate is
typically signed by the hospital's own CA.

pynetdicom only logs why a connection failed (``TCP Initialisation Error``)
and reports the association as not established; a :class:`DestinationContext`
also keeps the reason its last TLS handshake failed, so the caller can say
that it was the handshake (an untrusted certificate, a host name it does not
name, no common protocol) and not the network.
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


class _RecordingSocket(ssl.SSLSocket):
    """An ``SSLSocket`` whose failed handshake is recorded on its :class:`DestinationContext`."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError as exc:  # ssl.SSLError, or the peer closing the connection mid-handshake
            context = self.context
            if isinstance(context, DestinationContext):
                context.handshake_error = _reason(exc)
            raise


def _reason(exc: OSError) -> str:
    """``CERTIFICATE_VERIFY_FAILED: self-signed certificate``: OpenSSL's reason first (it fits an LO)."""
    reason = getattr(exc, "reason", None)
    if not isinstance(exc, ssl.SSLError) or not reason:
        return f"{type(exc).__name__}: {exc}"
    detail = getattr(exc, "verify_message", None)
    return f"{reason}: {detail}" if detail else f"{reason} ({exc})"


class DestinationContext(ssl.SSLContext):
    """A client-side context that remembers why its last TLS handshake failed.

    Made by :func:`client_context`. One context serves one sequence of
    connections (a move's associations, one forwarding attempt): the reason
    is that of the last failed handshake, taken with :meth:`pop_handshake_error`.
    """

    sslsocket_class = _RecordingSocket
    handshake_error: str | None = None

    def pop_handshake_error(self) -> str | None:
        """Why the last handshake failed (``None``: none failed since the last call); cleared.

        OpenSSL's reason and the verification message when there is one
        (``CERTIFICATE_VERIFY_FAILED: self-signed certificate``), else the
        exception (``ConnectionResetError: ...``).
        """
        error, self.handshake_error = self.handshake_error, None
        return error


def client_context(tls: TLSSettings | None) -> DestinationContext:
    """A client-side TLS context toward a destination (TLS 1.2 or later, certificate and host verified).

    Parameters
    ----------
    tls : TLSSettings or None
        The ``[tls]`` section: its certificate and key are presented to the
        destination and its CA bundle (if any) is trusted besides the system's.
        ``None``: no client certificate, the system's CAs only.

    Returns
    -------
    DestinationContext
        As ``ssl.create_default_context(ssl.Purpose.SERVER_AUTH)``: the
        certificate and the host name are verified.
    """
    context = DestinationContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None:
        context.load_cert_chain(certfile=tls.certificate, keyfile=tls.key)
        if tls.ca is not None:
            context.load_verify_locations(cafile=tls.ca)
    return context


__all__ = ["DestinationContext", "client_context", "server_context"]
