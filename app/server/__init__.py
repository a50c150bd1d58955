"""The HTTP server around the app: protocol limits, connection bounds, graceful shutdown."""
