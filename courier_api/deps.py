"""The courier side's dependencies, built from the service registry (the registry knows nothing of them)."""

from __future__ import annotations

from datetime import timedelta

from courier_api.delivery import DeliveryDeps
from courier_api.pickup_codes import PickupDeps
from courier_api.privacy import PrivacyDeps
from waybill.alerts.counters import Watch
from waybill.services import Services


def delivery_deps(svc: Services, watch: Watch | None = None) -> DeliveryDeps:
    """What dispatch, scan, call and delivery need: codec, token key, phone provider and lifetimes (and the
    app's alert-rule counters, ``watch``; none: those rules are off)."""
    settings = svc.settings
    return DeliveryDeps(codec=svc.codec, token_key=svc.keys.secret("qr_token"), provider=svc.provider,
                        binding_ttl=timedelta(hours=settings.binding_ttl_hours),
                        release_grace=timedelta(hours=settings.release_grace_hours),
                        token_max_age=timedelta(days=settings.qr_token_ttl_days), keyring=svc.subject_keys,
                        pickup=PickupDeps(key=svc.keys.secret("pickup_code"), messages=svc,
                                          max_failures=settings.alerts.threshold("pickup_code_failures", "count")),
                        on_scan=lambda outcome: svc.metrics.courier_scans.labels(outcome).inc(), watch=watch)


def privacy_deps(svc: Services, watch: Watch | None = None) -> PrivacyDeps:
    """What privacy officers' recorded requests need: codec, the reading window and the daily read quota."""
    return PrivacyDeps(codec=svc.codec, window=timedelta(minutes=svc.settings.privacy_request_minutes),
                       reads_per_day=svc.settings.privacy_reads_per_day, watch=watch,
                       alert_reads=svc.settings.alerts.threshold("privacy_reads", "count"))
