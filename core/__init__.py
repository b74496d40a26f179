"""The gas company's core domain service.

It owns the canonical message catalogue (the language every connector speaks), the domain tables
and the handlers that change them. It knows nothing of brokers or partner protocols: the hub hands
it validated messages and a database connection inside one transaction.
"""
