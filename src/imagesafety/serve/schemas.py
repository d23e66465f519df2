"""Request and response bodies (OpenAI's moderation shapes, plus our classify endpoint)."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, Field


class ImageURL(BaseModel):
    url: str = Field(
        description="a data URL (data:image/png;base64,...) or, where the operator allows it, an http(s) URL"
    )


class ImageInput(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class TextInput(BaseModel):
    type: Literal["text"]
    text: str


class ModerationRequest(BaseModel):
    input: Union[str, list[Union[ImageInput, TextInput]], list[str]]
    model: str | None = Field(
        default=None, description="classifier to use (see GET /v1/models); default: the first one served"
    )
    categories: list[str] | None = Field(default=None, description="only these categories can flag (default: all)")


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    imagesafety: dict = Field(
        default_factory=dict,
        description="unsafe score, decision, image sha256 and the classifier's own category scores",
    )


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


class ClassifyResult(BaseModel):
    filename: str | None
    image_sha256: str
    unsafe_score: float
    decision: int
    flagged: bool
    flagged_categories: list[str]
    category_scores: dict[str, float]
    raw: dict | list | str | None = None
    explanation: dict | None = Field(
        default=None,
        description="with explain=: the top evidence boxes [x0, y0, x1, y1, weight] in the file's pixels (the "
        "deciding frame), a detector's own boxes, and with explain=heatmap a PNG data URL of the map",
    )
    views: dict | None = Field(
        default=None,
        description="for animations, videos and transparent images: every frame's (and background's) score, per "
        "timestamp, and the view that decided",
    )


class ClassifyResponse(BaseModel):
    id: str
    model: str
    model_version: str
    taxonomy: dict
    results: list[ClassifyResult]
