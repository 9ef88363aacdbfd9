"""Prometheus metrics at TF Serving's path, /monitoring/prometheus/metrics (prometheus-client)."""

from __future__ import annotations

PATH = "/monitoring/prometheus/metrics"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The server's counters, in a registry of its own (so two apps in one process never mix)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: TF Serving has none, and they double the text
        self.registry = CollectorRegistry()
        self.requests = Counter("kerasdl_serve_requests", "Requests answered, by model, version, endpoint and status",
                                ["model", "version", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("kerasdl_serve_request_latency_seconds", "Time from request to answer, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("kerasdl_serve_batch_size", "Instances per model call (its count is the number "
                                    "of model calls)", ["model", "version"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("kerasdl_serve_queue_depth", "Requests waiting: for a slot (admission) or for "
                                 "a model call (batching)", ["queue"], registry=self.registry)
        self.in_flight = Gauge("kerasdl_serve_requests_in_flight", "Requests being worked on", registry=self.registry)
        self.loaded = Gauge("kerasdl_serve_model_version_loaded", "1 for every model version loaded and served",
                            ["model", "version"], registry=self.registry)
        self.failed = Gauge("kerasdl_serve_model_version_failed", "1 for every model version that failed to load",
                            ["model", "version"], registry=self.registry)

    def models_changed(self, store) -> None:
        """Set the loaded/failed gauges from the store (after every poll that changed something)."""
        self.loaded.clear()
        self.failed.clear()
        for name, model in store.models.items():
            for version in model.servables:
                self.loaded.labels(name, str(version)).set(1)
            for version in model.failed:
                self.failed.labels(name, str(version)).set(1)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
