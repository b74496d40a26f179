"""The canonical message catalogue.

Every message type the hub carries has an entry here: a dotted name, a version and a pydantic model
for the envelope's ``data``. The hub validates each message against its entry before any route sees
it, exports the catalogue as JSON Schema and AsyncAPI, and refuses routes that name a type missing
from it.
"""

from core.catalogue.base import CanonicalModel, Catalogue, CatalogueEntry, Lane, UnknownMessageType
from core.catalogue.messages import CATALOGUE, MessageType

__all__ = [
    "CATALOGUE",
    "CanonicalModel",
    "Catalogue",
    "CatalogueEntry",
    "Lane",
    "MessageType",
    "UnknownMessageType",
]
