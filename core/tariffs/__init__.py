"""The tariff book as versioned data in the database (append-only, by effective date).

:mod:`core.billing` prices with a :class:`~core.billing.TariffBook`; this package keeps the book's
versions in ``core_tariff_version`` and reads them back into one (:func:`load_book`,
:class:`TariffShelf`), adds versions without ever editing one (:func:`add_versions`) and lists them
(:func:`list_versions`).
"""

from core.tariffs.store import (
    Added,
    ListedVersion,
    StoredVersion,
    TariffShelf,
    VersionConflict,
    VersionRefused,
    VersionState,
    add_versions,
    book_revision,
    company_today,
    list_versions,
    load_book,
    prices_in_words,
    stored_versions,
)

__all__ = [
    "Added",
    "ListedVersion",
    "StoredVersion",
    "TariffShelf",
    "VersionConflict",
    "VersionRefused",
    "VersionState",
    "add_versions",
    "book_revision",
    "company_today",
    "list_versions",
    "load_book",
    "prices_in_words",
    "stored_versions",
]
