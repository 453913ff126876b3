"""The `serve` config section: network, authentication, limits and batching of `tunesmith serve`.

Every field is documented once here; `tunesmith serve` flags override them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServeConfig(BaseModel):
    """HTTP serving of a run or model with OpenAI-compatible routes."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to listen on; 127.0.0.1 keeps the server local.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Accepted Bearer keys; empty with no `api_keys_env` means no authentication.")
    api_keys_env: str | None = Field(
        "TUNESMITH_API_KEYS",
        description="Environment variable holding comma-separated keys, added to `api_keys` (keeps secrets out of files).")
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests per minute per key (per client address without keys); 0 disables. Excess gets 429 with Retry-After.")
    max_concurrency: int = Field(
        32, ge=1, description="Requests being generated at once; more wait in the queue.")
    max_queue: int = Field(
        64, ge=0, description="Requests allowed to wait for a slot; beyond it the server answers 503 with Retry-After.")
    max_request_bytes: int = Field(
        65536, ge=256, description="Largest request body; larger ones get 413.")
    max_tokens_limit: int = Field(
        512, ge=1, description="Largest `max_tokens` a request may ask for; more gets 400.")
    default_max_tokens: int = Field(128, ge=1, description="`max_tokens` when a request does not set it.")
    max_prompt_tokens: int = Field(
        2048, ge=1, description="Longest prompt in tokens after the chat template; longer gets 400.")
    batch_wait_ms: float = Field(
        10.0, ge=0, description="How long the batcher waits for more requests before starting a batch.")
    max_batch_size: int = Field(16, ge=1, description="Most requests generated together in one batch.")
