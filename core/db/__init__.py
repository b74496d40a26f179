"""The core's tables and its database helpers (SQLAlchemy 2 Core)."""
