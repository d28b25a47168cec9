"""The HTTP wire formats (pydantic models): what requests may hold and what responses say.

They are the OpenAPI schema at ``/docs`` and keep requests in bounds: ``k`` in
[1, :data:`MAX_K`], histories of at most :data:`MAX_HISTORY_ITEMS` items, event batches of
at most :data:`MAX_EVENTS`, IDs of 1 to :data:`MAX_ID` characters. IDs may be sent as
JSON strings or integers (``196`` and ``"196"`` are one ID); unknown keys are errors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

MAX_K = 1000
MAX_HISTORY_ITEMS = 10_000
MAX_EVENTS = 10_000
MAX_ID = 256
MAX_SPEC = 200


def _id_text(value: Any) -> Any:
    """Integer IDs as strings (``196`` is ``"196"``)."""
    if isinstance(value, int) and not isinstance(value, bool):  # a bool is rejected
        return str(value)
    return value


ExtId = Annotated[
    str,
    BeforeValidator(_id_text),
    StringConstraints(min_length=1, max_length=MAX_ID),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_ID}, {"type": "integer"}]}
    ),
]
#: in bodies, what JSON types say: no "5" for 5, no 0 for false (query strings convert)
K = Annotated[int, Strict(), Field(ge=1, le=MAX_K, description="List length.")]
EventType = Literal["impression", "click", "conversion"]


def _iso(value: Any) -> datetime:
    """An ISO 8601 date-time string only (not ``"123"``, which pydantic would read as
    unix seconds; numbers take the other branch of the timestamp)."""
    if not isinstance(value, str):
        raise ValueError("a date-time must be an ISO 8601 string")
    return datetime.fromisoformat(value)  # ValueError names the bad string


IsoDateTime = Annotated[datetime, BeforeValidator(_iso)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- recommend
class RecommendRequest(_Strict):
    """A list for a new or anonymous user's history (``POST /recommend``)."""

    history: list[ExtId] = Field(
        default_factory=list,
        max_length=MAX_HISTORY_ITEMS,
        description="Item IDs, oldest first. Unknown IDs are left out and listed in the "
        "response's unknown_items.",
    )
    times: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        None,
        max_length=MAX_HISTORY_ITEMS,
        description="When each history event happened (unix seconds, one per item, not "
        "decreasing), for the models that read the gaps between events (SASRec's "
        "time_gaps). Default: one second apart.",
    )
    k: K = 10
    exclude_seen: StrictBool = True
    explain: StrictBool = False
    rerank: str | None = Field(
        None, max_length=MAX_SPEC, description="Re-ranker spec, e.g. mmr:0.3 (empty: none)."
    )
    user_id: ExtId | None = Field(
        None,
        description="Who the list is for: chooses the A/B variant and is logged for the "
        "report. The posted history alone is scored.",
    )
    variant: str | None = Field(
        None,
        max_length=64,
        description="Serve this variant instead of the A/B assignment (demos, debugging); "
        "the list is logged under it.",
    )
    exclude: list[ExtId] = Field(
        default_factory=list,
        max_length=MAX_K,
        description="Item IDs never to return (out of stock, already in the cart).",
    )
    category: str | None = Field(
        None,
        max_length=MAX_ID,
        description="Only items of this category (the items' genre feature; case-insensitive).",
    )

    @model_validator(mode="after")
    def _times_match_history(self) -> RecommendRequest:
        if self.times is not None:
            if len(self.times) != len(self.history):
                raise ValueError(
                    f"times has {len(self.times)} entries for {len(self.history)} history items"
                )
            back = next(
                (i for i in range(1, len(self.times)) if self.times[i] < self.times[i - 1]), None
            )
            if back is not None:
                raise ValueError(f"times decrease at entry {back}: history is oldest first")
        return self


class ExplanationItem(BaseModel):
    item: str
    share: float


class Explanation(BaseModel):
    text: str
    items: list[ExplanationItem]


class RecommendedItem(BaseModel):
    item: str
    rank: int
    score: float
    explanation: Explanation | None = Field(
        None, description="Present when explain=true was asked for."
    )


class RecommendResponse(BaseModel):
    request_id: str
    variant: str
    user_id: str | None
    fallback: bool = Field(description="The popularity fallback served (no usable history).")
    items: list[RecommendedItem]
    unknown_items: list[str] | None = Field(
        None, description="POST /recommend only: history item IDs the model does not know."
    )


class SimilarItem(BaseModel):
    item: str
    rank: int
    score: float


class SimilarResponse(BaseModel):
    item_id: str
    variant: str
    items: list[SimilarItem]


# ---------------------------------------------------------------------------- events
class EventIn(_Strict):
    event_id: ExtId
    user_id: ExtId
    item_id: ExtId
    type: EventType
    timestamp: Annotated[float, Strict(), Field(allow_inf_nan=False)] | IsoDateTime = Field(
        description="Unix seconds, or an ISO 8601 date-time (UTC when it has no zone)."
    )
    request_id: str | None = Field(
        None, max_length=MAX_ID, description="The request_id of the list the event is about."
    )


class EventsRequest(_Strict):
    events: list[EventIn] = Field(max_length=MAX_EVENTS)


class EventsResponse(BaseModel):
    received: int
    stored: int = Field(description="New events (durable when this response is sent).")
    duplicates: int = Field(description="Events whose event_id was already stored.")


# ---------------------------------------------------------------------------- report
class VariantReport(BaseModel):
    name: str
    impressions: int
    clicks: int
    conversions: int
    ctr: float | None = Field(description="clicks / impressions (null without impressions)")
    ctr_ci: list[float] = Field(description="95% Wilson interval [lo, hi]")
    conversion_rate: float | None = Field(description="conversions / impressions")
    conversion_ci: list[float] = Field(description="95% Wilson interval [lo, hi]")


class Comparison(BaseModel):
    a: str
    b: str
    metric: Literal["ctr", "conversion_rate"]
    diff: float | None = Field(description="rate of b - rate of a")
    z: float | None
    p_value: float | None = Field(description="two-sided pooled two-proportion z-test")


class ExperimentReport(BaseModel):
    variants: list[VariantReport]
    comparisons: list[Comparison]


# ---------------------------------------------------------------------------- admin
class ReloadRequest(_Strict):
    variant: str | None = Field(None, description="Needed when several variants are served.")
    model_dir: str | None = Field(
        None, description="A saved model directory (default: the variant's current one)."
    )


class ModelInfo(BaseModel):
    model: str
    model_dir: str | None
    n_items: int
    n_users: int
    loaded_at: float
    optimized: bool = Field(
        description="Whether the model runs its faster inference form (a traced network)."
    )


class ReloadResponse(BaseModel):
    variant: str
    seconds: float
    served: ModelInfo


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    variants: dict[str, ModelInfo]
    traffic: dict[str, float]
    live_users: int
    live_events: int
    problem: str | None = Field(None, description="What is degraded, if anything.")


class Error(BaseModel):
    detail: str


# ---------------------------------------------------------------------------- web page
class ItemInfo(BaseModel):
    item: str
    title: str | None = Field(description="Null when the model has no item titles.")
    genres: list[str] = Field(description="Empty when the model has no genre-like feature.")


class ItemsResponse(BaseModel):
    items: list[ItemInfo]


class HistoryItem(ItemInfo):
    timestamp: float
    live: bool = Field(description="Received while serving (not in the training data).")


class HistoryResponse(BaseModel):
    user_id: str
    variant: str = Field(description="Whose model's stored history and catalog are shown.")
    known: bool = Field(description="The model has training events of this user.")
    n_events: int = Field(description="Stored + live events (items holds the latest).")
    items: list[HistoryItem] = Field(description="Latest first.")


class UserInfo(BaseModel):
    user: str
    n_events: int = Field(description="Training events of the user.")


class UsersResponse(BaseModel):
    users: list[UserInfo]


class VariantInfo(BaseModel):
    name: str
    traffic: float = Field(description="Percentage of users assigned to it.")
    model: str
    n_items: int
    n_users: int
    titles: bool = Field(description="Its items have titles.")
    genres: bool = Field(description="Its items have genres.")


class VariantsResponse(BaseModel):
    variants: list[VariantInfo]
