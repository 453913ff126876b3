"""Serve a run or model over HTTP: OpenAI-compatible routes, several LoRA adapters on one base,
request batching, API keys, rate and size limits, Prometheus metrics."""

from tunesmith.serve.adapters import ServedModel, load_served, parse_adapter_arg
from tunesmith.serve.app import create_app, run_server
from tunesmith.serve.limits import ApiError, RateLimiter

__all__ = ["ApiError", "RateLimiter", "ServedModel", "create_app", "load_served", "parse_adapter_arg", "run_server"]
