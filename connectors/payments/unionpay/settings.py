"""``UnionPaySettings``: our merchant number and the certificates UnionPay's signatures are checked with.

Nothing here is secret: receiving notifications needs only UnionPay's public certificates, which may
sit in ``config/`` (the root and middle certificates of UnionPay's package, ``acp_prod_root.cer`` and
``acp_prod_middle.cer``, or the signing certificates to pin).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from connectors.payments.notify import NotifySettings
from connectors.payments.unionpay.signing import SIGNER_NAME


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
        return self
