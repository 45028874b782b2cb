"""Forwarding: the network side of the outbox (``archive.forward``): send due tasks to destinations."""

from pacs_bridge.forward.worker import Forwarder, default_worker_id

__all__ = ["Forwarder", "default_worker_id"]
