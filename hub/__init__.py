"""gashub's integration runtime: envelope, transports, routes, mappings, retry, audit, ops."""

__version__ = "0.1.0"
