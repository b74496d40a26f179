"""``EcnySettings``: the merchant at its operating bank, the signature scheme and the keys.

The merchant's private key is ``SecretStr`` and comes from the environment
(``GASHUB_CONNECTORS__<NAME>__MERCHANT_PRIVATE_KEY``) or the secrets folder, never from a committed
file. The bank's public key may sit in ``config/``. Both are in the form ``sign_type`` asks for: PEM
for ``rsa-sha256``; hex for ``sm2-sm3`` (private: 64 digits; public: 128, ``x || y``, ``04`` prefix
allowed).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from connectors.payments.ecny.signing import SignType, signer, verifier
from connectors.payments.notify import NotifySettings


class EcnySettings(NotifySettings):
    kind: str = "ecny"
    path: str = Field(default="/partners/ecny/notify", pattern=r"^/partners/[a-z0-9/_-]+$")
    """Where the bank POSTs e-CNY payment notifications (mounted on the hub's web server)."""
    merchant_no: str = Field(pattern=r"^[0-9A-Za-z]{6,32}$")
    """Our merchant number at the bank; notifications for another merchant are refused."""
    sign_type: SignType = SignType.RSA_SHA256
    """The signature scheme the bank uses both ways: ``rsa-sha256`` or ``sm2-sm3``."""
    bank_public_key: str = Field(min_length=64)
    """The bank's verification key (see the module docstring for its form)."""
    merchant_private_key: SecretStr
    """Our signing key for requests to the bank."""
    base_url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    """The bank's API (orders are created at ``{base_url}/ecny/v1/orders``)."""
    notify_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    """The public address of ``path``, sent with each order; unset, the bank uses the one on file."""
    timestamp_window_s: int = Field(default=300, ge=10, le=3600)
    """A message signed further than this from our clock (either way) is refused as stale."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    in_call_attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _keys(self) -> Self:
        """Both keys must be of the configured scheme (a PEM key with ``sm2-sm3`` is a mistake)."""
        try:
            verifier(self.sign_type, self.bank_public_key)
        except ValueError as exc:
            raise ValueError(f"bank_public_key is not a {self.sign_type.value} key: {exc}") from None
        try:
            signer(self.sign_type, self.merchant_private_key.get_secret_value())
        except (ValueError, TypeError):  # the message could quote the key: say only what is wrong
            raise ValueError(f"merchant_private_key is not a {self.sign_type.value} private key") from None
        return self
