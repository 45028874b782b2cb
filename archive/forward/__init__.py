"""Forwarding received instances to other DICOM nodes through a durable outbox (issue 16).

The archive side lives here: the destination table and routes
(:mod:`archive.forward.config`), pure route matching (:mod:`archive.forward.routes`),
the retry policy (:mod:`archive.forward.retry`), the task model
(:mod:`archive.forward.model`), its SQL (:mod:`archive.forward.sql`) and the store
(:mod:`archive.forward.store`, reached as :attr:`archive.archive.Archive.forward`).
The network worker that sends the tasks is :mod:`pacs_bridge.forward`.
"""
