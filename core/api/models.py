"""Request and response models of the API; the OpenAPI document is generated from them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.catalogue.messages import AlarmKind

AlarmStatus = Literal["open", "acknowledged", "closed"]


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RevealQuery(Query):
    reveal: bool = Field(default=False, description="Personal fields in clear (admin, customer_service); audited.")


class ReadingsQuery(Query):
    meter_id: str | None = Field(default=None, min_length=1, max_length=32)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=500, description="Opaque: the next_cursor of a previous page.")


class AlarmsQuery(Query):
    status: AlarmStatus | None = None
    kind: AlarmKind | None = None
    meter_id: str | None = Field(default=None, min_length=1, max_length=32)
    district: str | None = Field(default=None, min_length=1, max_length=16,
                                 description="The district of the premises the meter's account supplies.")
    since: AwareDatetime | None = Field(default=None, description="Detected at or after.")
    until: AwareDatetime | None = Field(default=None, description="Detected before.")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=500)


class AuditQuery(Query):
    user_id: str | None = Field(default=None, max_length=32)
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=500)


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str = Field(description="Shown once; only its sha256 is stored.")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_at: datetime
    role: str


class Reading(BaseModel):
    id: str
    meter_id: str
    read_at: datetime
    volume_m3: Decimal
    source: str
    quality: str


class ReadingPage(BaseModel):
    items: list[Reading]
    next_cursor: str | None


class Alarm(BaseModel):
    id: str
    kind: str
    meter_id: str
    severity: int
    detected_at: datetime
    status: AlarmStatus | str
    detail: str
    correlation_id: str | None = Field(default=None, description="The flow it came in: GET /ops/messages/… traces it.")
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None
    note: str | None = Field(default=None, description="The operator's note, or the reason it was closed.")


class AlarmAcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500)


class AlarmCloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500)
    reason: str = Field(default="", max_length=500,
                        description="Why it is closed although a work order of the alarm is not handled yet "
                                    "(a false alarm, a duplicate…); not needed once its orders are handled.")


class AlarmPage(BaseModel):
    items: list[Alarm]
    next_cursor: str | None


class AlarmCount(BaseModel):
    kind: str
    status: str
    count: int


class AlarmSummary(BaseModel):
    """Counts only: no meter, customer or free text (safe for the government role)."""

    items: list[AlarmCount]


class AuditRecord(BaseModel):
    seq: int
    at: datetime
    user_id: str | None
    username: str | None
    role: str | None
    method: str
    path: str
    resource: str
    resource_id: str | None
    remote: str | None
    status: int
    detail: str


class AuditPage(BaseModel):
    items: list[AuditRecord]
    next_cursor: str | None


class Me(BaseModel):
    user_id: str
    username: str
    role: str
    token_expires_at: datetime
    permissions: dict[str, list[str]]


class Revoked(BaseModel):
    revoked: bool = True


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    parameter: str | None = None
