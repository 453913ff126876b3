"""Prometheus metrics of one server (own registry, so several apps in one process do not clash):
requests by route and status, latency histogram, tokens in and out, queue depth, batch sizes,
errors by kind."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServeMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tunesmith_requests_total", "HTTP requests by route and status.", ["route", "status"], registry=r)
        self.latency = Histogram("tunesmith_request_latency_seconds", "Request latency by route.", ["route"],
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r)
        self.tokens_in = Counter("tunesmith_prompt_tokens_total", "Prompt tokens processed.", ["model"], registry=r)
        self.tokens_out = Counter("tunesmith_completion_tokens_total", "Tokens generated.", ["model"], registry=r)
        self.queue_depth = Gauge("tunesmith_queue_depth", "Requests waiting for a slot or for the batcher.", registry=r)
        self.running = Gauge("tunesmith_running_requests", "Requests being generated.", registry=r)
        self.batch_size = Histogram("tunesmith_batch_size", "Requests per generate() batch.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.errors = Counter("tunesmith_errors_total", "Error answers by kind.", ["kind"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
