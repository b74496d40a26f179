"""The hub's own tables: message store, hop audit chain, dead letters, inbox, processed ledger."""
