"""The courier side's part of the service registry: built once per app by the extension, frozen.

It owns what used to sit in ``app.extensions`` side channels (the scan quota, the login throttle) and the
dependencies of dispatch/scan/call/deliver and of privacy officers' requests, so a request builds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from courier_api.delivery import DeliveryDeps
from courier_api.deps import delivery_deps, privacy_deps
from courier_api.login_throttle import LoginLimits, LoginThrottle
from courier_api.privacy import PrivacyDeps
from waybill.alerts.counters import Distinct, Watch
from waybill.ratelimit import RateLimiter, quota_limiter
from waybill.services import Services

EXTENSION_KEY = "courier_api"


@dataclass(frozen=True, slots=True)
class CourierServices:
    """What the courier side's requests need besides the shared registry (``base``)."""

    base: Services
    delivery: DeliveryDeps
    privacy: PrivacyDeps
    scan_quota: RateLimiter  # per courier: a burst per minute and an hourly quota (Redis when configured)
    login: LoginThrottle  # per (username, client) backoff, per client budget, alerts (Redis when configured)
    # The write-path alert rules' counters (Redis when configured), shared by delivery and privacy; None when
    # WAYBILL_ALERTS_ENABLED=0 (the benchmark's "rules off").
    watch: Watch | None


def login_limits(svc: Services) -> LoginLimits:
    """The login throttle's limits, from the settings."""
    s = svc.settings
    return LoginLimits(free=s.login_free_failures, base_s=s.login_backoff_base_s, max_s=s.login_backoff_max_s,
                       client_per_minute=s.login_client_failures_per_minute, user_alert=s.login_user_alert_failures,
                       alert_window_s=s.login_alert_window_s)


def credential_stuffing(svc: Services) -> Distinct:
    """The ``credential_stuffing`` rule's counter: distinct failing usernames per client (Redis when configured)."""
    alerts = svc.settings.alerts
    return Distinct("credential_stuffing", alerts.threshold("credential_stuffing", "usernames"),
                    alerts.threshold("credential_stuffing", "window_s"), storage=svc.limit_storage)


def build_courier(svc: Services) -> CourierServices:
    settings = svc.settings
    # Every counter below is in the registry's one limit store (Redis when configured): one pool per process.
    watch = Watch(settings.alerts, storage=svc.limit_storage) if settings.alerts.enabled else None
    return CourierServices(
        base=svc, delivery=delivery_deps(svc, watch), privacy=privacy_deps(svc, watch), watch=watch,
        scan_quota=quota_limiter(settings.redis_url, name="scan", per_minute=settings.scan_per_minute,
                                 per_hour=settings.scan_per_hour, storage=svc.limit_storage),
        login=LoginThrottle(login_limits(svc), storage=svc.limit_storage,
                            stuffing=credential_stuffing(svc) if settings.alerts.enabled else None),
    )


def install(app: Flask, svc: Services) -> CourierServices:
    """Build the courier registry for ``app`` (once) and keep it on the app."""
    found = app.extensions.get(EXTENSION_KEY)
    if not isinstance(found, CourierServices):
        found = app.extensions[EXTENSION_KEY] = build_courier(svc)
    return found


def courier_services() -> CourierServices:
    """The current app's courier registry."""
    found = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(found, CourierServices):
        raise RuntimeError("the courier extension is not installed on this app")
    return found
