"""Partner connectors: one package per partner system, each the same shape
(``connector.py``, ``settings.py``, ``simulator.py``, protocol modules, ``__init__.py``)."""
