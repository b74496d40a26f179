"""``UnionPaySettings``: our merchant number and the certificates UnionPay's signatures are checked with.

Receiving notifications needs only UnionPay's public certificates, which may sit in ``config/`` (the
root and middle certificates of UnionPay's package, ``acp_prod_root.cer`` and ``acp_prod_middle.cer``,
or the signing certificates to pin). Querying transactions also needs our merchant signing key, a
``SecretStr`` from the environment (``GASHUB_CONNECTORS__<NAME>__MERCHANT_PRIVATE_KEY``, PEM, as
exported from the merchant's ``.pfx``) or the secrets folder, and its certificate's serial.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.payments.notify import NotifySettings
from connectors.payments.unionpay.signing import SIGNER_NAME
from connectors.payments.wechatpay.signing import load_private_key


class UnionPaySettings(NotifySettings):
    kind: str = "unionpay"
    path: str = Field(default="/partners/unionpay/notify", pattern=r"^/partners/[a-z0-9/_-]+$")
    """Where UnionPay POSTs back-end notifications (``backUrl``), mounted on the hub's web server."""
    mer_id: str = Field(pattern=r"^[0-9A-Za-z]{15}$")
    """Our merchant number (商户代码, ``merId``); notifications for another merchant are refused."""
    root_cert: str | None = None
    """UnionPay's root certificate, PEM: a ``signPubKeyCert`` must chain to it through ``middle_cert``."""
    middle_cert: str | None = None
    """UnionPay's middle (intermediate) certificate, PEM."""
    sign_certs: list[str] = Field(default_factory=list)
    """Signing certificates to trust as they are (PEM), without the chain: a pinned deployment."""
    signer_name: str = Field(default=SIGNER_NAME, min_length=1)
    """The third ``@`` field of the signing certificate's CN (``00040000:SIGN`` in the test environment)."""
    max_age_s: int = Field(default=3 * 86_400, ge=600)
    """A notification whose ``txnTime`` is older than this is a replay: UnionPay's five sends of a
    notification all come well within it."""
    max_body_bytes: int = Field(default=16_384, ge=4096)
    merchant_private_key: SecretStr | None = None
    """Our merchant signing key (PEM), for transaction queries; unset, the connector only receives."""
    merchant_cert_id: str | None = Field(default=None, pattern=r"^\d{1,40}$")
    """The serial number (decimal) of our merchant signing certificate: ``certId`` in requests."""
    base_url: str = Field(default="https://gateway.95516.com", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    in_call_attempts: int = Field(default=3, ge=1, le=10)

    @field_validator("root_cert", "middle_cert")
    @classmethod
    def _pem(cls, v: str | None) -> str | None:
        if v is not None and "BEGIN CERTIFICATE" not in v:
            raise ValueError("a PEM certificate (-----BEGIN CERTIFICATE-----)")
        return v

    @model_validator(mode="after")
    def _trust(self) -> Self:
        chain = self.root_cert is not None and self.middle_cert is not None
        if not chain and not self.sign_certs:
            raise ValueError("set root_cert and middle_cert (UnionPay's chain), or sign_certs (pinned), or both")
        if (self.root_cert is None) != (self.middle_cert is None):
            raise ValueError("root_cert and middle_cert go together")
        if (self.merchant_private_key is None) != (self.merchant_cert_id is None):
            raise ValueError("merchant_private_key and merchant_cert_id go together (for queries)")
        if self.merchant_private_key is not None:
            try:
                load_private_key(self.merchant_private_key.get_secret_value())
            except (ValueError, TypeError):  # the message could quote the key: say only what is wrong
                raise ValueError("merchant_private_key is not a PEM RSA private key") from None
        return self
