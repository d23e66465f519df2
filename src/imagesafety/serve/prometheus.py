"""Prometheus metrics of one app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class ServiceMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "imagesafety_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "imagesafety_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "imagesafety_batch_size",
            "Images per model call",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.images = Counter("imagesafety_images", "Images classified", ["model"], registry=self.registry)
        self.flags = Counter(
            "imagesafety_flags", "Flagged images by category", ["model", "category"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
