"""Prometheus metrics, owned by the service container (one registry per :class:`~waybill.services.Services`).

Label values are chosen from small closed sets written in the code (route patterns, methods, status codes,
error codes, formats, outcomes, audit actions): nothing a caller sends and no personal data ever becomes a
label. Raw paths are never used: they hold shipment ids and receipt tokens.

Several gunicorn workers: each worker process has its own registry, so a scrape reaching one worker sees that
worker's counts only. With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts), prometheus_client
writes every worker's values to files in that directory and :meth:`Metrics.exposition` merges them, so any
worker answers for all (see docs/operations.md).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
# Request latency buckets (seconds): from a token lookup to a 10,000-label print job.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def method_label(method: str) -> str:
    """The HTTP method, or ``other`` for anything outside the standard set (a method is free text)."""
    upper = method.upper()
    return upper if upper in HTTP_METHODS else "other"


class Metrics:
    """The service's metrics in a registry of their own (tests get a fresh one with every container)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiproc_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiproc_dir = multiproc_dir
        reg = self.registry
        self.request_seconds = Histogram(
            "waybill_http_request_duration_seconds", "HTTP request latency by route pattern, method and status",
            ("route", "method", "status"), buckets=LATENCY_BUCKETS, registry=reg)
        self.refusals = Counter(
            "waybill_http_refusals", "Requests answered with a 4xx, by status and error code",
            ("status", "code"), registry=reg)
        self.labels_printed = Counter(
            "waybill_labels_printed", "Labels rendered, by format, size and kind (label, reprint, print_job)",
            ("format", "size", "kind"), registry=reg)
        self.courier_scans = Counter(
            "waybill_courier_scans", "Courier QR scans by outcome (ok, denied, not_found, quota_exceeded)",
            ("outcome",), registry=reg)
        self.scan_quota_alerts = Counter(
            "waybill_scan_quota_alerts", "Courier scan quota exceeded (each one raises an alert event)",
            registry=reg)
        self.audit_events = Counter(
            "waybill_audit_events_appended", "Audit events appended to the chain (committed), by action and outcome",
            ("action", "outcome"), registry=reg)
        self.sms_messages = Counter(
            "waybill_sms_messages", "Messages to people by template and outcome (queued, sent, retry, failed)",
            ("template", "outcome"), registry=reg)
        # Set when scraped (a count in the database, the same for every worker: the max of them).
        self.outbox_depth = Gauge(
            "waybill_outbox_depth", "Background-task messages not done yet (transactional outbox)",
            registry=reg, multiprocess_mode="max")

    def observe_request(self, route: str, method: str, status: int, seconds: float, error_code: str | None) -> None:
        self.request_seconds.labels(route, method_label(method), str(status)).observe(seconds)
        if 400 <= status < 500:
            self.refusals.labels(str(status), error_code or "http_error").inc()

    def audit_appended(self, events: list[tuple[str, str]]) -> None:
        for action, outcome in events:
            self.audit_events.labels(action, outcome).inc()

    def exposition(self) -> bytes:
        """The text format: this registry, or every worker's values in multiprocess mode."""
        if self.multiproc_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.multiproc_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)
