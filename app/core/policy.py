"""The knobs of per-source orchestration, and the idempotency key they define."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.events.control import SyncRequested

# A request that names another target commit is another request: without `after`
# in the key, a second push inside the TTL would be answered by the first push's
# job and its commit would never be synced (and incrementals could never coalesce).
DEFAULT_KEY_FIELDS = ("source_id", "mode", "trigger", "after")


class Policy(BaseModel):
    """Deadlines and idempotency. Built by the stream layer from `Settings`; pure data here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deadline_seconds: float = Field(default=3600.0, gt=0)
    idempotency_ttl_seconds: float = Field(default=300.0, gt=0)
    # Per source type ("git", "github"): overrides `idempotency_ttl_seconds`.
    idempotency_ttl_by_type: dict[str, float] = Field(default_factory=dict)
    # SyncRequested fields whose values make the key, in this order.
    idempotency_key_fields: tuple[str, ...] = DEFAULT_KEY_FIELDS
    # How long a request id is remembered so that its redelivery at another
    # offset starts nothing, and how many are remembered at most (bounded state).
    request_memory_seconds: float = Field(default=24 * 3600.0, gt=0)
    max_remembered_requests: int = Field(default=1000, ge=1)
    # Live idempotency keys kept per source at most: a burst of distinct requests inside the TTL
    # forgets the keys due to expire soonest first (the state stays bounded).
    max_held_keys: int = Field(default=1000, ge=1)
    # A record dated further than this after its broker time is refused (app.core.admission).
    max_clock_skew_seconds: float = Field(default=3600.0, gt=0)
    # The encoded size a source's state may reach; a record that would pass it is refused. Below
    # the broker's default record size (1 MiB), since the state is a changelog record.
    max_state_bytes: int = Field(default=512 * 1024, ge=4096)

    @field_validator("idempotency_key_fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("the idempotency key needs at least one field")
        unknown = [f for f in value if f not in SyncRequested.model_fields]
        if unknown:
            raise ValueError(f"not SyncRequested fields: {unknown}; known: {sorted(SyncRequested.model_fields)}")
        return value

    @field_validator("idempotency_ttl_by_type")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"idempotency TTLs must be positive: {bad}")
        return value

    def idempotency_ttl(self, source_type: str | None) -> timedelta:
        seconds = self.idempotency_ttl_by_type.get(source_type or "", self.idempotency_ttl_seconds)
        return timedelta(seconds=seconds)

    @property
    def deadline(self) -> timedelta:
        return timedelta(seconds=self.deadline_seconds)

    @property
    def request_memory(self) -> timedelta:
        return timedelta(seconds=self.request_memory_seconds)

    @property
    def max_clock_skew(self) -> timedelta:
        return timedelta(seconds=self.max_clock_skew_seconds)


def idempotency_key(request: SyncRequested, fields: tuple[str, ...]) -> str:
    """The key of `request`: its `fields` values joined by `|` (`-` for none, lists comma-joined)."""

    def render(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value)

    return "|".join(render(getattr(request, name)) for name in fields)
