"""Route-level authentication and permission checks (the first of the two checks)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, g, request
from sqlalchemy.orm import Session

from waybill import audit, merchants
from waybill.errors import (
    AuthenticationFailed,
    ObligationsLapsed,
    PermissionDenied,
    RateLimited,
    TooManyConcurrentRequests,
)
from waybill.extensions import TOKEN_RESOLVERS, TokenResolver
from waybill.permissions import PERSONAL_DATA_PERMISSIONS, Permission, Principal
from waybill.web.context import client_address, db_session, services

F = TypeVar("F", bound=Callable[..., Any])


def refuse_spent_client() -> None:
    """Before any lookup for an unauthenticated request: a client whose failure budget is spent is refused with
    ``429`` at once (counted, not recorded), so a flood costs neither key lookups nor audit writes."""
    wait = services().auth_failures.refusal(client_address() or "unknown")
    if wait is not None:
        raise RateLimited(wait)


def record_failure(session: Session, action: str) -> None:
    """Audit a failed unauthenticated request — or, past the client's budget, refuse it with ``429`` and only
    count it: a flood of bad credentials cannot turn into a flood of durable audit writes. The first failure
    recorded after a suppressed run says how many were suppressed."""
    wait, suppressed = services().auth_failures.failure(client_address() or "unknown")
    if wait is not None:
        raise RateLimited(wait)
    if suppressed:
        audit.record(session, None, action, outcome="suppressed", purpose=f"count={suppressed}", durable=True)
    audit.record(session, None, action, outcome="denied", durable=True)


def bearer_token() -> str:
    """The raw bearer token of the current request, or :class:`AuthenticationFailed`."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 512:
        raise AuthenticationFailed()
    return token.strip()


def authenticate() -> Principal:
    """Resolve the caller from the ``Authorization`` header: merchant API key or staff access token.

    Staff tokens (resolved by the courier extension) are checked against the database on every request
    (expiry, revocation, the user's ``disabled_at``), so disabling a user takes effect on their very next
    request.
    """
    principal: Principal | None = g.get("principal")
    if principal is not None:
        return principal
    refuse_spent_client()
    session = db_session()
    try:
        token = bearer_token()
        if token.startswith(merchants.KEY_PREFIX + "_"):
            principal = merchants.authenticate(session, token,
                                               api_key_secret=services().keys.secret("api_key"))
        else:
            # Other kinds of token (staff access tokens) belong to extensions; unknown ones are refused.
            resolvers: dict[str, TokenResolver] = current_app.extensions.get(TOKEN_RESOLVERS, {})
            resolve = next((fn for prefix, fn in resolvers.items() if token.startswith(prefix)), None)
            if resolve is None:
                raise AuthenticationFailed()
            principal = resolve(session, token, services())
    except AuthenticationFailed:
        record_failure(session, "auth.failed")
        raise
    g.principal = principal
    return principal


def charge(principal: Principal, cost: float) -> None:
    """Take ``cost`` units from the merchant's budget, or refuse with ``429`` (nothing taken, nothing done).

    Either way the answer carries the budget's state (:func:`rate_limit_headers`)."""
    limiter = services().merchant_limiter
    wait = limiter.hit(principal.id, cost)
    g.rate_limit = limiter.state(principal.id)
    if wait is not None:
        raise RateLimited(wait)


def rate_limit_headers(response: Response) -> None:
    """``after_request``: a merchant's answer (a ``429`` too) says its budget: ``X-RateLimit-Limit`` (units per
    window), ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix time, seconds, when the oldest unit
    counted ages out: Flask-Limiter's convention)."""
    state = g.pop("rate_limit", None)
    if state is not None:
        response.headers["X-RateLimit-Limit"] = str(state.limit)
        response.headers["X-RateLimit-Remaining"] = str(state.remaining)
        response.headers["X-RateLimit-Reset"] = str(math.ceil(state.reset_at))


def hold_heavy_slot(principal: Principal) -> None:
    """Count this request among the caller's heavy requests in flight until it has ended (committed and
    answered), or refuse it with ``429`` at once when the caller already has the allowed number in flight."""
    release = services().heavy_requests.try_acquire(principal.actor)
    if release is None:
        raise TooManyConcurrentRequests()
    g.setdefault("heavy_releases", []).append(release)


def release_heavy_slots(_exc: BaseException | None = None) -> None:
    """``teardown_request``: after the unit of work has finished (``after_request``), free the request's slots."""
    for release in g.pop("heavy_releases", []):
        release()


def required_permission(view: Callable[..., Any] | None) -> Permission | None:
    """The permission a view's route requires (``None``: none or not declared with :func:`requires`)."""
    found = getattr(view, "__waybill_permission__", None)
    return found if isinstance(found, Permission) else None


def requires(permission: Permission, *, cost: float = 1.0) -> Callable[[F], F]:
    """Authenticate, check the role holds ``permission`` (and, for a personal-data permission, that the staff
    member's obligations have not lapsed), and charge a merchant ``cost`` units of its budget."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            if not principal.can(permission):
                audit.record(db_session(), principal, "access.denied", outcome="denied",
                             purpose=str(permission), durable=True)
                raise PermissionDenied()
            if principal.obligations_lapsed and permission in PERSONAL_DATA_PERMISSIONS:
                # Before the view looks anything up: an unknown id and a real one get the same answer.
                audit.record(db_session(), principal, "access.denied", outcome="obligations_lapsed",
                             purpose=str(permission), durable=True)
                raise ObligationsLapsed()
            if principal.kind == "merchant":
                charge(principal, cost)
            return fn(*args, **kwargs)

        wrapper.__waybill_permission__ = permission  # type: ignore[attr-defined]  # read by required_permission
        return wrapper  # type: ignore[return-value]

    return deco
