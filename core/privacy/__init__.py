"""Personal-information protection in the core (GB/T 35273; requirements A3 and A4).

* ``FieldCipher`` — AES-256-GCM encryption of personal fields at rest, bound to table, column and row.
* ``BlindIndex`` — keyed HMAC index for exact lookup by phone or ID number without decrypting.
* ``KeyRing`` — the named master keys (from settings), one current; ``rotate``/``rotate_rows`` move
  data written under older keys to the current one.
* ``mask_phone``, ``mask_id_number``, ``mask_name``, ``mask_address`` — masking for API output.
"""

from __future__ import annotations

from core.privacy.blind import BlindIndex, Purpose
from core.privacy.crypto import (
    DecryptionError,
    FieldCipher,
    RowRotation,
    Token,
    field_context,
    key_id_of,
    rotate,
    rotate_rows,
)
from core.privacy.keys import GENERATE_COMMAND, KeyRing, KeyRingError, generate_key
from core.privacy.masking import mask_address, mask_id_number, mask_name, mask_phone
from core.privacy.normalise import normalise_id_number, normalise_phone

__all__ = [
    "GENERATE_COMMAND",
    "BlindIndex",
    "DecryptionError",
    "FieldCipher",
    "KeyRing",
    "KeyRingError",
    "Purpose",
    "RowRotation",
    "Token",
    "field_context",
    "generate_key",
    "key_id_of",
    "mask_address",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "normalise_id_number",
    "normalise_phone",
    "rotate",
    "rotate_rows",
]
