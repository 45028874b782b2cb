"""Query/Retrieve: the retrieve half (C-MOVE and C-GET SCP) of :class:`~pacs_bridge.server.BridgeServer`."""
