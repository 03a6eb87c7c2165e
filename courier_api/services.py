"""The courier side's part of the service registry: built once per app by the extension, frozen.

It owns what used to sit in ``app.extensions`` side channels (the scan quota, the login limiters) and the
dependencies of dispatch/scan/call/deliver and of privacy officers' requests, so a request builds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from courier_api.delivery import DeliveryDeps
from courier_api.deps import delivery_deps, privacy_deps
from courier_api.privacy import PrivacyDeps
from waybill.ratelimit import RateLimiter, TokenBucketLimiter, quota_limiter
from waybill.services import Services

EXTENSION_KEY = "courier_api"
# Login throttling, in front of the per-account lockout: it slows guessing across many accounts
# from one address (IP bucket) and spraying one account from many addresses (username bucket).
LOGIN_IP_BURST = 30
LOGIN_IP_RATE_PER_S = 0.5
LOGIN_USER_BURST = 10
LOGIN_USER_RATE_PER_S = 10 / 60


@dataclass(frozen=True, slots=True)
class CourierServices:
    """What the courier side's requests need besides the shared registry (``base``)."""

    base: Services
    delivery: DeliveryDeps
    privacy: PrivacyDeps
    scan_quota: RateLimiter  # per courier: a burst per minute and an hourly quota (Redis when configured)
    login_by_ip: RateLimiter  # one set per worker process
    login_by_user: RateLimiter


def build_courier(svc: Services) -> CourierServices:
    settings = svc.settings
    return CourierServices(
        base=svc, delivery=delivery_deps(svc), privacy=privacy_deps(svc),
        scan_quota=quota_limiter(settings.redis_url, name="scan", per_minute=settings.scan_per_minute,
                                 per_hour=settings.scan_per_hour),
        login_by_ip=TokenBucketLimiter(LOGIN_IP_RATE_PER_S, LOGIN_IP_BURST),
        login_by_user=TokenBucketLimiter(LOGIN_USER_RATE_PER_S, LOGIN_USER_BURST),
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
