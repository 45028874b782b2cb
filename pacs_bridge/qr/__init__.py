"""Query/Retrieve services of the receiver: C-FIND (:mod:`~pacs_bridge.qr.find`), C-MOVE and C-GET.

C-MOVE and C-GET are served by :mod:`pacs_bridge.qr.service`.
"""
