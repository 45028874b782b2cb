"""Query/Retrieve services of the receiver: C-FIND (:mod:`pacs_bridge.qr.find`); C-MOVE and C-GET to come."""
