"""Operations: the ops HTTP API, dead-letter replay and the dashboard."""
