"""The permission sweep: every endpoint x every principal x own / foreign / missing object.

Permissions are named values, checked by role on the route and by object (ownership, assignment,
station) in the domain; anything not granted is denied. The expectations below are written out by
hand as data: a change to a role's permissions, a new endpoint or a relaxed object check makes a
case fail here instead of silently widening access.

One installation per module, with real commits: staff log in once (an MFA code is accepted once per
30 s step), and every case that needs an object makes a fresh one, so state-changing calls (cancel,
reprint, assign, deliver) never see each other's effects.

Objects (absolute, the same for every principal):
- ``A``: the merchant's shipment to 深圳市南山区 (station 755-W012: the ``courier``, ``courier_same``
  and ``dispatcher`` principals' station); when the endpoint needs it assigned, it is assigned to
  ``courier``.
- ``A_unassigned``: like ``A``, printed but assigned to nobody (courier endpoints only).
- ``B``: the other merchant's shipment to 北京市朝阳区 (station 010-W201: ``courier_far`` and
  ``dispatcher_far``); when assigned, it is assigned to a bystander courier of that station.
- ``missing``: a well-formed id (or QR token) that does not exist.

For the privacy officer's reads the object is a recorded request: ``A`` / ``B`` a request the
``privacy_officer`` principal filed for such a shipment (approved by another officer), ``A_foreign`` one filed
by another officer. For approvals it is a pending request: ``A`` / ``B`` filed by another officer, ``A_own``
one the ``privacy_officer`` principal filed (four eyes: their own is answered like a missing one).
"""

from __future__ import annotations

import base64
import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select, update

from courier_api import attempts, delivery, partners, privacy, reports, sorting, staff
from courier_api.deps import delivery_deps, privacy_deps
from courier_api.models import StaffUser
from courier_api.subjects import access as subject_access
from courier_api.subjects import requests as subject_requests
from courier_api.subjects.models import SubjectRequest
from tests.conftest import RECIPIENT, _drop, _new_env, make_merchant, shipment_body
from tests.courier_api import bearer, login, make_partner, make_staff
from waybill import audit, labels, lifecycle, print_jobs, retention, shipments, webhooks
from waybill.alerts import review as alert_review
from waybill.alerts import store
from waybill.alerts.models import Alert
from waybill.audit import checkpoints as audit_checkpoints
from waybill.errors import DomainError, PermissionDenied
from waybill.ids import new_id
from waybill.incidents import domain as incident_domain
from waybill.models import Shipment, utcnow
from waybill.permissions import ROLE_PERMISSIONS, SYSTEM, Permission, Principal
from waybill.schemas import ShipmentIn, parse
from waybill.virtual_numbers import add_numbers
from waybill.webhooks.models import WebhookEndpoint

STATION = "755-W012"  # 深圳市南山区
FAR_STATION = "010-W201"  # 北京市朝阳区
FAR_RECIPIENT = dict(RECIPIENT, province="北京市", city="北京市", district="朝阳区", address="建国路88号2栋301室")
# Routes without a principal: the token endpoints check their own credentials, and the provider's receipt
# push is authenticated by the secret in its URL (tests/virtual_numbers/test_receipt_push.py); the operational
# routes answer load balancers and scrapers (tests/waybill/test_operations.py); /my/ is a static page whose
# script calls the subject API (tests/browser/, tests/waybill/test_subject_page.py); /app/courier/ is the couriers'
# static app, whose script calls the courier API (tests/browser/test_courier_app.py,
# tests/courier_api/test_handheld_page.py).
PUBLIC_PATHS = {"/openapi.json", "/healthz", "/readyz", "/metrics", "/v1/auth/token", "/v1/auth/logout",
                "/v1/subject/challenge", "/v1/subject/session", "/v1/privacy-notice",
                "/v1/phone/receipts/<token>", "/my/", "/my/assets/<name>",
                "/app/courier/", "/app/courier/<name>"}

PRINCIPALS = ("anon", "merchant", "other_merchant", "courier", "courier_same", "courier_far", "dispatcher",
              "dispatcher_far", "sorter", "auditor", "privacy_officer", "admin", "subject")
ROLE_OF = {"merchant": "merchant", "other_merchant": "merchant", "courier": "courier", "courier_same": "courier",
           "courier_far": "courier", "dispatcher": "dispatcher", "dispatcher_far": "dispatcher", "sorter": "sorter",
           "auditor": "auditor", "privacy_officer": "privacy_officer", "admin": "admin", "subject": "subject"}
# Staff principals: username, role, station. ``courier_b`` is the bystander B is assigned to.
STAFF = {
    "courier": ("sw_courier", "courier", STATION),
    "courier_same": ("sw_courier_same", "courier", STATION),
    "courier_far": ("sw_courier_far", "courier", FAR_STATION),
    "courier_b": ("sw_courier_b", "courier", FAR_STATION),
    "dispatcher": ("sw_dispatcher", "dispatcher", STATION),
    "dispatcher_far": ("sw_dispatcher_far", "dispatcher", FAR_STATION),
    "sorter": ("sw_sorter", "sorter", STATION),
    "sorter_far": ("sw_sorter_far", "sorter", FAR_STATION),  # prints B (sorters act for their own station only)
    "auditor": ("sw_auditor", "auditor", None),
    "privacy_officer": ("sw_privacy", "privacy_officer", None),
    "privacy_other": ("sw_privacy_other", "privacy_officer", None),
    "admin": ("sw_admin", "admin", None),
}
# Roles that grant nothing: "system" (the CLI's, never a staff login) and one nobody defined.
EMPTY_ROLES = tuple(role for role, perms in ROLE_PERMISSIONS.items() if not perms) + ("no_such_role",)
COURIER_PHONES = {"courier": "13700001001", "courier_same": "13700001002", "courier_far": "13700001003",
                  "courier_b": "13700001004"}

# -- the expectation table -------------------------------------------------------------------------------
# ok: 2xx with the endpoint's answer; 401 unauthenticated; 403 role lacks the route's permission;
# 404 not theirs (byte-identical to the answer for a missing object). The sorter is of A's station (755-W012):
# B (Shanghai -> Beijing) is of no station or hub of theirs.

_NONE = "-"
TABLE_TEXT = """
endpoint                 object        anon  merch other cour  c_sam c_far disp  d_far sort  aud   priv  admin  subj
merchant.create          -             401   ok    ok    403   403   403   403   403   403   403   403   403   403
merchant.create_batch    -             401   ok    ok    403   403   403   403   403   403   403   403   403   403
merchant.list_           -             401   ok    ok    403   403   403   403   403   403   403   403   403   403
merchant.search          -             401   ok    ok    403   403   403   403   403   403   403   403   403   403
merchant.get             A             401   ok    404   403   403   403   403   403   403   403   403   403   403
merchant.get             B             401   404   ok    403   403   403   403   403   403   403   403   403   403
merchant.get             missing       401   404   404   403   403   403   403   403   403   403   403   403   403
merchant.cancel          A             401   ok    404   403   403   403   403   403   403   403   403   403   403
merchant.cancel          B             401   404   ok    403   403   403   403   403   403   403   403   403   403
merchant.cancel          missing       401   404   404   403   403   403   403   403   403   403   403   403   403
labels.label             A             401   ok    404   403   403   403   403   403   ok    403   403   403   403
labels.label             B             401   404   ok    403   403   403   403   403   404   403   403   403   403
labels.label             missing       401   404   404   403   403   403   403   403   404   403   403   403   403
labels.reprint           A             401   ok    404   403   403   403   403   403   ok    403   403   403   403
labels.reprint           B             401   404   ok    403   403   403   403   403   404   403   403   403   403
labels.reprint           missing       401   404   404   403   403   403   403   403   404   403   403   403   403
labels.print_job         A             401   403   403   403   403   403   403   403   ok    403   403   403   403
labels.print_job         B             401   403   403   403   403   403   403   403   404   403   403   403   403
labels.print_job         missing       401   403   403   403   403   403   403   403   404   403   403   403   403
courier.assign           A             401   403   403   403   403   403   ok    404   403   403   403   403   403
courier.assign           B             401   403   403   403   403   403   404   ok    403   403   403   403   403
courier.assign           missing       401   403   403   403   403   403   404   404   403   403   403   403   403
courier.scan             A             401   403   403   ok    404   404   403   403   403   403   403   403   403
courier.scan             A_unassigned  401   403   403   404   404   404   403   403   403   403   403   403   403
courier.scan             B             401   403   403   404   404   404   403   403   403   403   403   403   403
courier.scan             missing       401   403   403   404   404   404   403   403   403   403   403   403   403
courier.call             A             401   403   403   ok    404   404   403   403   403   403   403   403   403
courier.call             A_unassigned  401   403   403   404   404   404   403   403   403   403   403   403   403
courier.call             B             401   403   403   404   404   404   403   403   403   403   403   403   403
courier.call             missing       401   403   403   404   404   404   403   403   403   403   403   403   403
courier.deliver          A             401   403   403   ok    404   404   403   403   403   403   403   403   403
courier.deliver          A_unassigned  401   403   403   404   404   404   403   403   403   403   403   403   403
courier.deliver          B             401   403   403   404   404   404   403   403   403   403   403   403   403
courier.deliver          missing       401   403   403   404   404   404   403   403   403   403   403   403   403
courier.resend_code      A             401   403   403   403   403   403   ok    404   403   403   403   403   403
courier.resend_code      B             401   403   403   403   403   403   404   ok    403   403   403   403   403
courier.resend_code      missing       401   403   403   403   403   403   404   404   403   403   403   403   403
partners.create_partner  -             401   403   403   403   403   403   403   403   403   403   403   ok    403
partners.list_partners   -             401   403   403   ok    ok    ok    ok    ok    403   403   403   ok    403
partners.disclosures     -             401   403   403   403   403   403   403   403   403   ok    ok    403   403
courier.audit_events     -             401   403   403   403   403   403   403   403   403   ok    403   403   403
courier.audit_verify     -             401   403   403   403   403   403   403   403   403   ok    403   403   403
courier.audit_checkpoints -            401   403   403   403   403   403   403   403   403   ok    403   403   403
privacy.file_request     A             401   403   403   403   403   403   403   403   403   403   ok    403   403
privacy.file_request     B             401   403   403   403   403   403   403   403   403   403   ok    403   403
privacy.file_request     missing       401   403   403   403   403   403   403   403   403   403   404   403   403
privacy.read_request     A             401   403   403   403   403   403   403   403   403   403   ok    403   403
privacy.read_request     B             401   403   403   403   403   403   403   403   403   403   ok    403   403
privacy.read_request     A_foreign     401   403   403   403   403   403   403   403   403   403   404   403   403
privacy.read_request     missing       401   403   403   403   403   403   403   403   403   403   404   403   403
privacy.approve_request  A             401   403   403   403   403   403   403   403   403   403   ok    403   403
privacy.approve_request  B             401   403   403   403   403   403   403   403   403   403   ok    403   403
privacy.approve_request  A_own         401   403   403   403   403   403   403   403   403   403   404   403   403
privacy.approve_request  missing       401   403   403   403   403   403   403   403   403   403   404   403   403
subjects.data            -             401   403   403   403   403   403   403   403   403   403   403   403   ok
subjects.access_log      -             401   403   403   403   403   403   403   403   403   403   403   403   ok
subjects.file_request    -             401   403   403   403   403   403   403   403   403   403   403   403   ok
subjects.get_request     A             401   403   403   403   403   403   403   403   403   403   403   403   ok
subjects.get_request     B             401   403   403   403   403   403   403   403   403   403   403   403   404
subjects.get_request     missing       401   403   403   403   403   403   403   403   403   403   403   403   404
subjects.office_queue    -             401   403   403   403   403   403   403   403   403   403   ok    403   403
subjects.office_request  A             401   403   403   403   403   403   403   403   403   403   ok    403   403
subjects.office_request  B             401   403   403   403   403   403   403   403   403   403   ok    403   403
subjects.office_request  missing       401   403   403   403   403   403   403   403   403   403   404   403   403
subjects.decide          A             401   403   403   403   403   403   403   403   403   403   ok    403   403
subjects.decide          B             401   403   403   403   403   403   403   403   403   403   ok    403   403
subjects.decide          missing       401   403   403   403   403   403   403   403   403   403   404   403   403
retention.destructions   -             401   403   403   403   403   403   403   403   403   ok    ok    403   403
reports.monthly          -             401   403   403   403   403   403   403   403   403   ok    ok    403   403
retention.place_hold     -             401   403   403   403   403   403   403   403   403   403   ok    403   403
retention.release_hold   -             401   403   403   403   403   403   403   403   403   403   ok    403   403
webhooks.create          -             401   ok    ok    403   403   403   403   403   403   403   403   403   403
webhooks.list_           -             401   ok    ok    403   403   403   403   403   403   403   403   403   403
webhooks.delete          A             401   ok    404   403   403   403   403   403   403   403   403   403   403
webhooks.delete          B             401   404   ok    403   403   403   403   403   403   403   403   403   403
webhooks.delete          missing       401   404   404   403   403   403   403   403   403   403   403   403   403
webhooks.rotate_secret   A             401   ok    404   403   403   403   403   403   403   403   403   403   403
webhooks.rotate_secret   B             401   404   ok    403   403   403   403   403   403   403   403   403   403
webhooks.rotate_secret   missing       401   404   404   403   403   403   403   403   403   403   403   403   403
webhooks.deliveries      A             401   ok    404   403   403   403   403   403   403   403   403   403   403
webhooks.deliveries      B             401   404   ok    403   403   403   403   403   403   403   403   403   403
webhooks.deliveries      missing       401   404   404   403   403   403   403   403   403   403   403   403   403
movement.sorting_scans   -             401   403   403   403   403   403   403   403   ok    403   403   403   403
movement.attempt         A             401   403   403   ok    404   404   403   403   403   403   403   403   403
movement.attempt         A_unassigned  401   403   403   404   404   404   403   403   403   403   403   403   403
movement.attempt         B             401   403   403   404   404   404   403   403   403   403   403   403   403
movement.attempt         missing       401   403   403   404   404   404   403   403   403   403   403   403   403
tracking.events          A             401   ok    404   403   403   403   403   403   403   403   403   403   403
tracking.events          B             401   404   ok    403   403   403   403   403   403   403   403   403   403
tracking.events          missing       401   404   404   403   403   403   403   403   403   403   403   403   403
incidents.create         -             401   403   403   403   403   403   403   403   403   403   ok    403   403
incidents.list_          -             401   403   403   403   403   403   403   403   403   ok    ok    403   403
incidents.get            A             401   403   403   403   403   403   403   403   403   ok    ok    403   403
incidents.get            B             401   403   403   403   403   403   403   403   403   ok    ok    403   403
incidents.get            missing       401   403   403   403   403   403   403   403   403   404   404   403   403
incidents.add_timeline   A             401   403   403   403   403   403   403   403   403   403   ok    403   403
incidents.add_timeline   B             401   403   403   403   403   403   403   403   403   403   ok    403   403
incidents.add_timeline   missing       401   403   403   403   403   403   403   403   403   403   404   403   403
incidents.notify         A             401   403   403   403   403   403   403   403   403   403   ok    403   403
incidents.notify         B             401   403   403   403   403   403   403   403   403   403   ok    403   403
incidents.notify         missing       401   403   403   403   403   403   403   403   403   403   404   403   403
incidents.report_        A             401   403   403   403   403   403   403   403   403   403   ok    403   403
incidents.report_        B             401   403   403   403   403   403   403   403   403   403   ok    403   403
incidents.report_        missing       401   403   403   403   403   403   403   403   403   403   404   403   403
alerts.list_alerts       -             401   403   403   403   403   403   403   403   403   ok    ok    ok    403
alerts.resolve           A             401   403   403   403   403   403   403   403   403   403   ok    ok    403
alerts.resolve           B             401   403   403   403   403   403   403   403   403   403   ok    ok    403
alerts.resolve           missing       401   403   403   403   403   403   403   403   403   403   404   404   403
"""


def _parse_table(text: str) -> dict[tuple[str, str, str], str]:
    table: dict[tuple[str, str, str], str] = {}
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert len(header) == 2 + len(PRINCIPALS)
    for row in rows:
        assert len(row) == 2 + len(PRINCIPALS), row
        endpoint, obj, outcomes = row[0], row[1], row[2:]
        for who, outcome in zip(PRINCIPALS, outcomes, strict=True):
            assert outcome in {"ok", "401", "403", "404"}, row
            assert (endpoint, obj, who) not in table, row
            table[(endpoint, obj, who)] = outcome
    return table


TABLE = _parse_table(TABLE_TEXT)


@dataclass(frozen=True)
class Endpoint:
    method: str
    rule: str
    permission: Permission
    state: str | None  # what the object must be for an allowed call to succeed: created / printed / assigned


ENDPOINTS: dict[str, Endpoint] = {
    "merchant.create": Endpoint("POST", "/v1/shipments", Permission.SHIPMENT_CREATE, None),
    "merchant.create_batch": Endpoint("POST", "/v1/shipments/batch", Permission.SHIPMENT_CREATE, None),
    "merchant.list_": Endpoint("GET", "/v1/shipments", Permission.SHIPMENT_LIST, None),
    "merchant.search": Endpoint("POST", "/v1/shipments/search", Permission.SHIPMENT_LIST, None),
    "merchant.get": Endpoint("GET", "/v1/shipments/<shp:shipment_id>", Permission.SHIPMENT_READ, "created"),
    "merchant.cancel": Endpoint("POST", "/v1/shipments/<shp:shipment_id>/cancel", Permission.SHIPMENT_CANCEL,
                                "created"),
    "labels.label": Endpoint("GET", "/v1/shipments/<shp:shipment_id>/label", Permission.LABEL_READ, "created"),
    "labels.reprint": Endpoint("POST", "/v1/shipments/<shp:shipment_id>/label/reprint", Permission.LABEL_REPRINT,
                               "printed"),
    "labels.print_job": Endpoint("POST", "/v1/print-jobs", Permission.PRINT_JOB_CREATE, "created"),
    "courier.assign": Endpoint("POST", "/v1/dispatch/assignments", Permission.DISPATCH_ASSIGN, "printed"),
    "courier.scan": Endpoint("POST", "/v1/courier/scan", Permission.COURIER_SCAN, "assigned"),
    "courier.call": Endpoint("POST", "/v1/courier/shipments/<shipment_id>/call", Permission.COURIER_CALL,
                             "assigned"),
    "courier.deliver": Endpoint("POST", "/v1/courier/shipments/<shipment_id>/deliver", Permission.COURIER_DELIVER,
                                "assigned"),
    "courier.resend_code": Endpoint("POST", "/v1/dispatch/shipments/<shipment_id>/pickup-code",
                                    Permission.PICKUP_CODE_RESEND, "dispatched"),
    "partners.create_partner": Endpoint("POST", "/v1/partners", Permission.PARTNER_MANAGE, None),
    "partners.list_partners": Endpoint("GET", "/v1/partners", Permission.PARTNER_READ, None),
    "partners.disclosures": Endpoint("GET", "/v1/privacy/disclosures", Permission.DISCLOSURE_READ, None),
    "courier.audit_events": Endpoint("GET", "/v1/audit/events", Permission.AUDIT_READ, None),
    "courier.audit_verify": Endpoint("GET", "/v1/audit/verify", Permission.AUDIT_READ, None),
    "courier.audit_checkpoints": Endpoint("GET", "/v1/audit/checkpoints", Permission.AUDIT_READ, None),
    "privacy.file_request": Endpoint("POST", "/v1/privacy/requests", Permission.PERSONAL_DATA_REQUEST, "created"),
    "privacy.read_request": Endpoint("GET", "/v1/privacy/requests/<request_id>/personal-data",
                                     Permission.PERSONAL_DATA_REQUEST, "requested"),
    "privacy.approve_request": Endpoint("POST", "/v1/privacy/requests/<request_id>/approve",
                                        Permission.PERSONAL_DATA_REQUEST, "pending"),
    "subjects.data": Endpoint("GET", "/v1/subject/data", Permission.SUBJECT_DATA_READ, None),
    "subjects.access_log": Endpoint("GET", "/v1/subject/access-log", Permission.SUBJECT_LOG_READ, None),
    "subjects.file_request": Endpoint("POST", "/v1/subject/requests", Permission.SUBJECT_REQUEST, None),
    "subjects.get_request": Endpoint("GET", "/v1/subject/requests/<request_id>", Permission.SUBJECT_REQUEST,
                                     "subject_request"),
    "subjects.office_queue": Endpoint("GET", "/v1/privacy/subject-requests", Permission.SUBJECT_REQUEST_DECIDE,
                                      None),
    "subjects.office_request": Endpoint("GET", "/v1/privacy/subject-requests/<request_id>",
                                        Permission.SUBJECT_REQUEST_DECIDE, "subject_request"),
    "subjects.decide": Endpoint("POST", "/v1/privacy/subject-requests/<request_id>/decision",
                                Permission.SUBJECT_REQUEST_DECIDE, "subject_request"),
    "retention.destructions": Endpoint("GET", "/v1/privacy/destructions", Permission.DESTRUCTION_READ, None),
    "reports.monthly": Endpoint("GET", "/v1/privacy/reports/<month>", Permission.PRIVACY_REPORT_READ, None),
    "retention.place_hold": Endpoint("POST", "/v1/privacy/holds", Permission.PRIVACY_HOLD, None),
    "retention.release_hold": Endpoint("DELETE", "/v1/privacy/holds/<hold_id>", Permission.PRIVACY_HOLD, None),
    "webhooks.create": Endpoint("POST", "/v1/webhooks", Permission.WEBHOOK_MANAGE, None),
    "webhooks.list_": Endpoint("GET", "/v1/webhooks", Permission.WEBHOOK_MANAGE, None),
    "webhooks.delete": Endpoint("DELETE", "/v1/webhooks/<webhook_id>", Permission.WEBHOOK_MANAGE, "webhook"),
    "webhooks.rotate_secret": Endpoint("POST", "/v1/webhooks/<webhook_id>/rotate-secret", Permission.WEBHOOK_MANAGE,
                                       "webhook"),
    "webhooks.deliveries": Endpoint("GET", "/v1/webhooks/<webhook_id>/deliveries", Permission.WEBHOOK_MANAGE,
                                    "webhook"),
    # The object of a scan batch is made by the call itself (one of A's station, printed): the scope of sorters
    # over the numbers of a batch, item by item, is tests/courier_api/test_sorting.py's.
    "movement.sorting_scans": Endpoint("POST", "/v1/sorting/scans", Permission.SORTING_SCAN, None),
    "movement.attempt": Endpoint("POST", "/v1/courier/shipments/<shipment_id>/attempt", Permission.COURIER_ATTEMPT,
                                 "assigned"),
    "tracking.events": Endpoint("GET", "/v1/shipments/<shp:shipment_id>/events", Permission.TRACKING_READ,
                                "created"),
    "incidents.create": Endpoint("POST", "/v1/incidents", Permission.INCIDENT_MANAGE, None),
    "incidents.list_": Endpoint("GET", "/v1/incidents", Permission.INCIDENT_READ, None),
    "incidents.get": Endpoint("GET", "/v1/incidents/<incident_id>", Permission.INCIDENT_READ, "incident"),
    "incidents.add_timeline": Endpoint("POST", "/v1/incidents/<incident_id>/timeline", Permission.INCIDENT_MANAGE,
                                       "incident"),
    "incidents.notify": Endpoint("POST", "/v1/incidents/<incident_id>/notify", Permission.INCIDENT_MANAGE,
                                 "incident"),
    "incidents.report_": Endpoint("GET", "/v1/incidents/<incident_id>/report", Permission.INCIDENT_MANAGE,
                                  "incident"),
    # Alerts are nobody's own: A and B are fresh open alerts (warnings, raised by a courier of each station).
    "alerts.list_alerts": Endpoint("GET", "/v1/alerts", Permission.ALERT_READ, None),
    "alerts.resolve": Endpoint("POST", "/v1/alerts/<alert_id>/resolve", Permission.ALERT_RESOLVE, "alert"),
}
# A webhook URL at a literal public address: passes the SSRF guard without DNS (nothing is ever sent to it here).
HOOK_URL = "https://93.184.215.14/sweep-hook"
# A past month: the monthly privacy report's object (any valid month answers; none is anyone's).
REPORT_MONTH = "2026-01"

# Permissions no HTTP route checks; the domain does (accounts are managed through the CLI, as the system).
DOMAIN_ONLY = {Permission.USER_MANAGE, Permission.RETENTION_RUN}


# -- the installation -------------------------------------------------------------------------------------


@dataclass
class Obj:
    id: str
    token: str | None = None


@dataclass
class World:
    app: Any
    client: Any
    svc: Any
    headers: dict[str, dict[str, str]]
    principals: dict[str, Principal]
    merchants: dict[str, Any]
    subject_shipment: str = ""
    partner: str = ""  # a registered locker partner (deliveries name it)
    seq: Iterator[int] = field(default_factory=itertools.count)

    def order_id(self, owner: str) -> str:
        return f"{'A' if owner == 'merchant' else 'B'}-{next(self.seq)}"

    def shipment(self, obj: str, state: str | None) -> Obj:
        """A fresh object for one case (``missing``: an id nobody has)."""
        if obj == "missing":
            prefix = {"requested": "pdr", "pending": "pdr", "subject_request": "sjr", "webhook": "whk",
                      "incident": "inc", "alert": "alr"}.get(
                state or "", "shp")
            return Obj(new_id(prefix), _random_token())
        if state == "subject_request":
            # A: the subject principal's own request (on its shipment); B: another subject's, on a B shipment.
            sid = self.subject_shipment if obj == "A" else self.shipment("B", None).id
            actor = self.principals["subject"] if obj == "A" else sweep_subject(self.svc, sid)[1]
            with self.svc.session_factory() as s:
                # Earlier cases' requests are done with: close them, or the party's bound on open complaints
                # (three) would refuse this one.
                s.execute(update(SubjectRequest).where(SubjectRequest.shipment_id == sid)
                          .values(status="completed"))
                req = subject_requests.file_request(s, self.svc, actor, "complaint", None, "包裹破损")
                s.commit()
            return Obj(req.id)
        if state == "alert":
            return Obj(self.alert(obj))
        owner, recipient, station = ("merchant", RECIPIENT, STATION) if obj.startswith("A") else \
            ("other_merchant", FAR_RECIPIENT, FAR_STATION)
        if state == "webhook":
            return Obj(self.webhook(owner))
        if state == "incident":  # an incident over a fresh shipment of A's (B's), recorded by another officer
            sid = self.shipment(obj, None).id
            with self.svc.session_factory() as s:
                made = incident_domain.create(s, self.svc.codec, self.principals["privacy_other"],
                                              incident_domain.NewIncident(
                                                  title="扫描", kind="loss", severity="general",
                                                  detected_at=utcnow(), scope=incident_domain.Scope(
                                                      shipment_ids=[sid])), report_hours=4)
                s.commit()
            return Obj(made.id)
        r = self.client.post("/v1/shipments", json=shipment_body(self.order_id(owner), recipient=dict(recipient)),
                             headers=self.merchants[owner].headers)
        assert r.status_code == 201, r.get_json()
        shp = r.get_json()
        assert shp["sorting_code"].startswith(station + "-"), shp["sorting_code"]  # the premise of the table
        made = Obj(shp["id"])
        if state in ("printed", "assigned", "dispatched"):
            with self.svc.session_factory() as s:
                sorter = self.principals["sorter" if owner == "merchant" else "sorter_far"]
                (model,) = print_jobs.issue_print_job(s, self.svc.label_deps, sorter, [made.id])
                s.commit()
            made.token = model.token
        if state in ("assigned", "dispatched") and obj != "A_unassigned":
            dispatcher, courier = ("dispatcher", "courier") if owner == "merchant" else ("dispatcher_far", "courier_b")
            with self.svc.session_factory() as s:
                delivery.assign(s, self.principals[dispatcher], made.id, STAFF[courier][0],
                                provider=self.svc.provider, pickup=delivery_deps(self.svc).pickup)
                s.commit()
        if state in ("requested", "pending"):
            # Filed by the privacy_officer principal (read cases) or by the other officer (approval cases), and
            # for reads approved by the officer who did not file it.
            theirs = obj == "A_foreign" if state == "requested" else obj != "A_own"
            officer, approver = (self.principals["privacy_other"], self.principals["privacy_officer"]) if theirs \
                else (self.principals["privacy_officer"], self.principals["privacy_other"])
            with self.svc.session_factory() as s:
                req = privacy.file_request(s, privacy_deps(self.svc), officer, made.id, "complaint", "SWEEP-2026-1",
                                           ["recipient.name", "recipient.phone"])
                if state == "requested":
                    privacy.approve_request(s, privacy_deps(self.svc), approver, req.id)
                s.commit()
            return Obj(req.id)
        return made


    def alert(self, obj: str) -> str:
        """A fresh open alert (a warning: it suspends nobody) raised by the courier of A's or of B's station."""
        principal = self.principals["courier" if obj == "A" else "courier_far"]
        with self.svc.session_factory() as s:
            store.fire(s, principal, "not_found_burst", object_type="sweep", object_id=f"case-{next(self.seq)}")
            s.commit()
            return str(s.scalars(select(Alert.id).where(Alert.actor == principal.actor)
                                 .order_by(Alert.id.desc())).first())

    def webhook(self, owner: str) -> str:
        """A fresh endpoint of ``owner``; its earlier ones are removed first (a merchant may keep ten)."""
        principal = self.principals[owner]
        with self.svc.session_factory() as s:
            for row in webhooks.list_endpoints(s, principal):
                webhooks.delete_endpoint(s, principal, row.id)
            s.commit()
        r = self.client.post("/v1/webhooks", json={"url": HOOK_URL, "events": ["shipment.status_changed"]},
                             headers=self.merchants[owner].headers)
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["id"])


def sweep_subject(svc: Any, shipment_id: str) -> tuple[str, Principal]:
    """A subject session (the recipient of ``shipment_id``), made by the domain: its raw token and principal."""
    from courier_api.subjects.service import build as build_subject_services
    from courier_api.subjects.verify import issue_token

    with svc.session_factory() as s:
        raw, row = issue_token(s, build_subject_services(svc).verify, _sweep_challenge(s, shipment_id), shipment_id,
                               "recipient")
        s.commit()
    return raw, Principal("subject", row.id, "subject")


def _sweep_challenge(s: Any, shipment_id: str) -> str:
    from courier_api.subjects.models import SubjectChallenge
    from waybill.models import utcnow

    ch = SubjectChallenge(id=new_id("sch"), code_hash=bytes(32), shipment_id=shipment_id, party="recipient",
                          created_at=utcnow(), expires_at=utcnow(), attempts=0, used_at=utcnow())
    s.add(ch)
    s.flush()
    return ch.id


def _random_token() -> str:
    """Shaped like a real QR payload (32 base32 characters), issued by nobody."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    env = _new_env(tmp_path_factory.mktemp("sweep"), scan_per_minute=10_000, scan_per_hour=1_000_000,
                   subject_token_ttl_s=3600, sms_per_phone_per_hour=1000)  # every case's recipient: one phone
    try:
        app = env.app()
        svc = app.extensions["waybill"]
        client = app.test_client()
        merchants = {"merchant": make_merchant(svc, "商户甲"), "other_merchant": make_merchant(svc, "商户乙")}
        users = {key: make_staff(svc, name, role, station) for key, (name, role, station) in STAFF.items()}
        # Principals whose role grants nothing: made as couriers, logged in, then their stored role is changed.
        empty = {role: make_staff(svc, f"sw_role_{i}", "courier", STATION)
                 for i, role in enumerate(EMPTY_ROLES)}
        with svc.session_factory() as s:
            add_numbers(s, [f"1700000{n:04d}" for n in range(1, 9)])
            for key, phone in COURIER_PHONES.items():
                staff.set_phone(s, SYSTEM, STAFF[key][0], phone, svc.codec)
            s.commit()
        headers = {"anon": {}, **{k: m.headers for k, m in merchants.items()}}
        for key, new in {**users, **{f"role:{r}": n for r, n in empty.items()}}.items():
            r = login(client, new)
            assert r.status_code == 200, (key, r.get_json())
            headers[key] = bearer(r.get_json()["access_token"])
        with svc.session_factory() as s:
            for role, new in empty.items():
                s.execute(update(StaffUser).where(StaffUser.id == new.user.id).values(role=role))
            s.commit()
        principals = {key: Principal("staff", new.user.id, new.user.role, new.user.station)
                      for key, new in users.items()}
        principals.update({k: Principal("merchant", m.id, "merchant") for k, m in merchants.items()})
        # The subject principal: the recipient of one of the merchant's shipments (A's station).
        r = client.post("/v1/shipments", json=shipment_body("A-subject"), headers=merchants["merchant"].headers)
        assert r.status_code == 201, r.get_json()
        raw, principals["subject"] = sweep_subject(svc, r.get_json()["id"])
        headers["subject"] = bearer(raw)
        yield World(app, client, svc, headers, principals, merchants, subject_shipment=r.get_json()["id"],
                    partner=make_partner(svc, "locker", "丰巢智能柜"))
    finally:
        _drop(env)


# -- the calls --------------------------------------------------------------------------------------------

Call = Callable[[World, dict[str, str], str, Obj | None], Any]


def _courier_for(who: str) -> str:
    """The courier a dispatcher assigns to: one of their own station, so only the shipment decides."""
    return STAFF["courier_far" if who == "dispatcher_far" else "courier_same"][0]


CALLS: dict[str, Call] = {
    "merchant.create": lambda w, h, who, o: w.client.post(
        "/v1/shipments", json=shipment_body(w.order_id(who)), headers=h),
    "merchant.create_batch": lambda w, h, who, o: w.client.post(
        "/v1/shipments/batch", json={"shipments": [shipment_body(w.order_id(who))]}, headers=h),
    "merchant.list_": lambda w, h, who, o: w.client.get("/v1/shipments?limit=20", headers=h),
    "merchant.search": lambda w, h, who, o: w.client.post(
        "/v1/shipments/search", json={"recipient_phone": RECIPIENT["phone"], "limit": 20}, headers=h),
    "merchant.get": lambda w, h, who, o: w.client.get(f"/v1/shipments/{o.id}", headers=h),
    "merchant.cancel": lambda w, h, who, o: w.client.post(f"/v1/shipments/{o.id}/cancel", headers=h),
    "labels.label": lambda w, h, who, o: w.client.get(f"/v1/shipments/{o.id}/label?format=zpl", headers=h),
    "labels.reprint": lambda w, h, who, o: w.client.post(
        f"/v1/shipments/{o.id}/label/reprint", json={"reason": "damaged", "format": "zpl"}, headers=h),
    "labels.print_job": lambda w, h, who, o: w.client.post(
        "/v1/print-jobs", json={"shipment_ids": [o.id], "format": "zpl"}, headers=h),
    "courier.assign": lambda w, h, who, o: w.client.post(
        "/v1/dispatch/assignments", json={"shipment_id": o.id, "courier": _courier_for(who)}, headers=h),
    "courier.scan": lambda w, h, who, o: w.client.post("/v1/courier/scan", json={"token": o.token}, headers=h),
    "courier.call": lambda w, h, who, o: w.client.post(f"/v1/courier/shipments/{o.id}/call", headers=h),
    "courier.deliver": lambda w, h, who, o: w.client.post(
        f"/v1/courier/shipments/{o.id}/deliver", json={"method": "locker", "locker_id": "L-07",
                                                       "partner_id": w.partner}, headers=h),
    "courier.resend_code": lambda w, h, who, o: w.client.post(f"/v1/dispatch/shipments/{o.id}/pickup-code",
                                                              headers=h),
    "partners.create_partner": lambda w, h, who, o: w.client.post("/v1/partners", json={
        "name": "菜鸟驿站", "kind": "station", "agreement_ref": "CN-2026/1", "agreement_expires": "2099-01-01"},
        headers=h),
    "partners.list_partners": lambda w, h, who, o: w.client.get("/v1/partners", headers=h),
    "partners.disclosures": lambda w, h, who, o: w.client.get("/v1/privacy/disclosures?limit=5", headers=h),
    "courier.audit_events": lambda w, h, who, o: w.client.get("/v1/audit/events?limit=5", headers=h),
    "courier.audit_verify": lambda w, h, who, o: w.client.get("/v1/audit/verify", headers=h),
    "courier.audit_checkpoints": lambda w, h, who, o: w.client.get("/v1/audit/checkpoints?limit=5", headers=h),
    "privacy.file_request": lambda w, h, who, o: w.client.post("/v1/privacy/requests", json={
        "shipment_id": o.id, "purpose": "complaint", "reference": "CASE-2026-0001", "fields": ["recipient.phone"]},
        headers=h),
    "privacy.read_request": lambda w, h, who, o: w.client.get(f"/v1/privacy/requests/{o.id}/personal-data",
                                                              headers=h),
    "privacy.approve_request": lambda w, h, who, o: w.client.post(f"/v1/privacy/requests/{o.id}/approve", headers=h),
    "subjects.data": lambda w, h, who, o: w.client.get("/v1/subject/data", headers=h),
    "subjects.access_log": lambda w, h, who, o: w.client.get("/v1/subject/access-log", headers=h),
    "subjects.file_request": lambda w, h, who, o: w.client.post(
        "/v1/subject/requests", json={"type": "complaint", "text": "包裹破损"}, headers=h),
    "subjects.get_request": lambda w, h, who, o: w.client.get(f"/v1/subject/requests/{o.id}", headers=h),
    "subjects.office_queue": lambda w, h, who, o: w.client.get("/v1/privacy/subject-requests?limit=5", headers=h),
    "subjects.office_request": lambda w, h, who, o: w.client.get(f"/v1/privacy/subject-requests/{o.id}", headers=h),
    "subjects.decide": lambda w, h, who, o: w.client.post(
        f"/v1/privacy/subject-requests/{o.id}/decision", json={"decision": "reject", "reason": "重复投诉"}, headers=h),
    "retention.destructions": lambda w, h, who, o: w.client.get("/v1/privacy/destructions?limit=5", headers=h),
    "reports.monthly": lambda w, h, who, o: w.client.get(f"/v1/privacy/reports/{REPORT_MONTH}", headers=h),
    "retention.place_hold": lambda w, h, who, o: w.client.post("/v1/privacy/holds", json={
        "shipment_ids": [w.shipment("A", None).id], "reason": "公安调证 SWEEP-1"}, headers=h),
    "retention.release_hold": lambda w, h, who, o: w.client.delete(f"/v1/privacy/holds/{_hold(w)}", headers=h),
    "webhooks.create": lambda w, h, who, o: w.client.post(
        "/v1/webhooks", json={"url": HOOK_URL, "events": ["shipment.status_changed"]}, headers=h),
    "webhooks.list_": lambda w, h, who, o: w.client.get("/v1/webhooks", headers=h),
    "webhooks.delete": lambda w, h, who, o: w.client.delete(f"/v1/webhooks/{o.id}", headers=h),
    "webhooks.rotate_secret": lambda w, h, who, o: w.client.post(f"/v1/webhooks/{o.id}/rotate-secret", headers=h),
    "webhooks.deliveries": lambda w, h, who, o: w.client.get(f"/v1/webhooks/{o.id}/deliveries?limit=5", headers=h),
    "movement.sorting_scans": lambda w, h, who, o: w.client.post(
        "/v1/sorting/scans", json={"waybill_nos": [_waybill_no(w, w.shipment("A", "printed"))], "event": "arrival"},
        headers=h),
    "movement.attempt": lambda w, h, who, o: w.client.post(
        f"/v1/courier/shipments/{o.id}/attempt", json={"reason": "not_home"}, headers=h),
    "tracking.events": lambda w, h, who, o: w.client.get(f"/v1/shipments/{o.id}/events", headers=h),
    "incidents.create": lambda w, h, who, o: w.client.post("/v1/incidents", json={
        "title": "扫描", "kind": "leak", "detected_at": "2026-01-01T00:00:00Z",
        "scope": {"shipment_ids": [w.shipment("A", None).id]}}, headers=h),
    "incidents.list_": lambda w, h, who, o: w.client.get("/v1/incidents?limit=5", headers=h),
    "incidents.get": lambda w, h, who, o: w.client.get(f"/v1/incidents/{o.id}", headers=h),
    "incidents.add_timeline": lambda w, h, who, o: w.client.post(f"/v1/incidents/{o.id}/timeline",
                                                                 json={"action": "contained"}, headers=h),
    "incidents.notify": lambda w, h, who, o: w.client.post(f"/v1/incidents/{o.id}/notify", headers=h),
    "incidents.report_": lambda w, h, who, o: w.client.get(f"/v1/incidents/{o.id}/report", headers=h),
    "alerts.list_alerts": lambda w, h, who, o: w.client.get("/v1/alerts?limit=5", headers=h),
    "alerts.resolve": lambda w, h, who, o: w.client.post(f"/v1/alerts/{o.id}/resolve",
                                                         json={"resolution": "核查无异常"}, headers=h),
}


def _waybill_no(w: World, obj: Obj) -> str:
    with w.svc.session_factory() as s:
        return str(s.scalar(select(Shipment.waybill_no).where(Shipment.id == obj.id)))


def _hold(w: World) -> str:
    """A legal hold placed (in the domain, by another privacy officer) for a release call to lift."""
    officer = Principal(kind="staff", id="sweep-po", role="privacy_officer")
    with w.svc.session_factory() as s:
        hold = lifecycle.place_hold(s, officer, reason="SWEEP", shipment_ids=[w.shipment("A", None).id])
        s.commit()
        return hold.id


def _prefix(who: str) -> str:
    return "A-" if who == "merchant" else "B-"


def _check_allowed(endpoint: str, who: str, obj: Obj | None, r: Any, world: World | None = None) -> None:
    """The endpoint's own answer: proof the call got through both checks and did its work."""
    body = r.get_json(silent=True)
    if endpoint == "merchant.create":
        assert r.status_code == 201 and body["merchant_order_id"].startswith(_prefix(who))
    elif endpoint == "merchant.create_batch":
        assert r.status_code == 200 and body["results"][0]["status"] == "created"
    elif endpoint in ("merchant.list_", "merchant.search"):
        # Own shipments only: both merchants hold shipments (made for this case), each sees its own.
        orders = [item["merchant_order_id"] for item in body["items"]]
        assert r.status_code == 200 and orders and all(o.startswith(_prefix(who)) for o in orders), orders
    elif endpoint == "merchant.get":
        assert r.status_code == 200 and body["id"] == obj.id
    elif endpoint == "merchant.cancel":
        assert r.status_code == 200 and body["status"] == "cancelled"
    elif endpoint in ("labels.label", "labels.reprint", "labels.print_job"):
        assert r.status_code == 200 and r.mimetype == "application/zpl" and r.data
    elif endpoint == "courier.assign":
        assert r.status_code == 201 and body["shipment_id"] == obj.id and body["status"] == "out_for_delivery"
    elif endpoint == "courier.scan":
        assert r.status_code == 200 and body["shipment_id"] == obj.id
    elif endpoint == "courier.call":
        assert r.status_code == 200 and body["virtual_number"].startswith("170")
    elif endpoint == "courier.deliver":
        assert r.status_code == 200 and body["status"] == "delivered"
    elif endpoint == "courier.resend_code":
        assert r.status_code == 202 and body == {"shipment_id": obj.id, "sent": True}
    elif endpoint == "partners.create_partner":
        assert r.status_code == 201 and body["id"].startswith("ptn_") and body["kind"] == "station"
    elif endpoint == "partners.list_partners":
        assert r.status_code == 200 and any(item["id"] for item in body["items"])
    elif endpoint == "partners.disclosures":
        assert r.status_code == 200 and isinstance(body["items"], list)
    elif endpoint == "courier.audit_events":
        assert r.status_code == 200 and isinstance(body["items"], list) and body["items"]
    elif endpoint == "courier.audit_verify":
        assert r.status_code == 200 and body["ok"] is True
    elif endpoint == "courier.audit_checkpoints":
        assert r.status_code == 200 and isinstance(body["items"], list) and len(body["public_key"]) == 44
    elif endpoint == "privacy.file_request":
        assert r.status_code == 201 and body["shipment_id"] == obj.id and body["fields"] == ["recipient.phone"]
    elif endpoint == "privacy.read_request":
        assert r.status_code == 200 and body["request_id"] == obj.id and body["sender"] is None
        assert set(body["recipient"]) == {"name", "phone"} and body["recipient"]["phone"].isdigit()
    elif endpoint == "privacy.approve_request":
        assert r.status_code == 200 and body["id"] == obj.id and body["status"] == "approved"
    elif endpoint == "subjects.data":
        assert r.status_code == 200 and body["party"] == "recipient" and body["personal_data"]["phone"].isdigit()
    elif endpoint == "subjects.access_log":
        assert r.status_code == 200 and body["items"]
    elif endpoint == "subjects.file_request":
        assert r.status_code == 201 and body["status"] == "received"
    elif endpoint == "subjects.get_request":
        assert r.status_code == 200 and body["id"] == obj.id
    elif endpoint == "subjects.office_queue":
        assert r.status_code == 200 and isinstance(body["items"], list)
    elif endpoint == "subjects.office_request":
        assert r.status_code == 200 and body["id"] == obj.id and body["text"] == "包裹破损"
    elif endpoint == "subjects.decide":
        assert r.status_code == 200 and body["id"] == obj.id and body["status"] == "rejected"
    elif endpoint == "retention.destructions":
        assert r.status_code == 200 and isinstance(body["items"], list)
    elif endpoint == "reports.monthly":
        # Actors (as ids) in the auditor's report only.
        assert r.status_code == 200 and body["month"] == REPORT_MONTH and body["complete"] is True
        assert (body["accesses"]["top_actors"] is None) == (who == "privacy_officer")
    elif endpoint == "retention.place_hold":
        assert r.status_code == 201 and body["status"] == "active" and body["shipments"] == 1
    elif endpoint == "retention.release_hold":
        assert r.status_code == 200 and body["status"] == "released"
    elif endpoint == "webhooks.create":
        assert r.status_code == 201 and body["secret"].startswith("whsec_") and body["url"] == HOOK_URL
    elif endpoint == "webhooks.list_":
        # Own endpoints only: both merchants hold one (made for this case), each sees its own and never a secret.
        assert r.status_code == 200 and len(body["items"]) >= 1 and all("secret" not in i for i in body["items"])
        assert world is not None
        with world.svc.session_factory() as s:
            owners = {s.get(WebhookEndpoint, i["id"]).merchant_id for i in body["items"]}
        assert owners == {world.merchants[who].id}, owners
    elif endpoint == "webhooks.delete":
        assert r.status_code == 200 and body["id"] == obj.id and body["status"] == "deleted"
    elif endpoint == "webhooks.rotate_secret":
        assert r.status_code == 200 and body["secret"].startswith("whsec_")
    elif endpoint == "webhooks.deliveries":
        assert r.status_code == 200 and body == {"items": []}
    elif endpoint == "movement.sorting_scans":
        assert r.status_code == 200 and [res["status"] for res in body["results"]] == ["in_transit"]
    elif endpoint == "movement.attempt":
        assert r.status_code == 200 and body["id"] == obj.id and body["status"] == "delivery_failed"
    elif endpoint == "tracking.events":
        assert r.status_code == 200 and [i["seq"] for i in body["items"]] == [1]
    elif endpoint == "incidents.create":
        assert r.status_code == 201 and body["id"].startswith("inc_") and body["affected_subjects"] == 2
    elif endpoint == "incidents.list_":
        assert r.status_code == 200 and isinstance(body["items"], list)
    elif endpoint == "incidents.get":
        assert r.status_code == 200 and body["id"] == obj.id and body["affected_subjects"] == 2
    elif endpoint == "incidents.add_timeline":
        assert r.status_code == 201 and body["id"] == obj.id and body["status"] == "contained"
    elif endpoint == "incidents.notify":
        assert r.status_code == 200 and body == {"notified": 1}  # the recipient; the sender's is a landline
    elif endpoint == "incidents.report_":
        assert r.status_code == 200 and body["incident_id"] == obj.id and body["affected_subjects"] == 2
    elif endpoint == "alerts.list_alerts":
        assert r.status_code == 200 and isinstance(body["items"], list) and "next_cursor" in body
    elif endpoint == "alerts.resolve":
        assert r.status_code == 200 and body["id"] == obj.id and body["status"] == "resolved"
    else:  # every endpoint has a check above
        raise AssertionError(endpoint)


REFUSALS = {"401": "unauthenticated", "403": "forbidden", "404": "not_found"}



def _sweep_case(w: World, endpoint: str, obj_kind: str, who: str, expected: str, headers: dict[str, str]) -> None:
    spec = ENDPOINTS[endpoint]
    obj = w.shipment(obj_kind, spec.state) if obj_kind != _NONE else None
    if endpoint in ("merchant.list_", "merchant.search"):
        w.shipment("A", None)
        w.shipment("B", None)
    if endpoint == "webhooks.list_":
        w.shipment("A", "webhook")
        w.shipment("B", "webhook")

    r = CALLS[endpoint](w, headers, who, obj)
    if expected == "ok":
        _check_allowed(endpoint, who, obj, r, world=w)
        return
    assert r.status_code == int(expected), (r.status_code, r.get_data(as_text=True))
    assert r.get_json()["error"]["code"] == REFUSALS[expected]
    if obj is not None:
        # The refusal says nothing about the object: the answer for an id nobody has is the same, byte for byte.
        nobody = CALLS[endpoint](w, headers, who, w.shipment("missing", ENDPOINTS[endpoint].state))
        assert (nobody.status_code, nobody.data) == (r.status_code, r.data)


CASES = [pytest.param(endpoint, obj, who, outcome, id=f"{endpoint}-{obj}-{who}")
         for (endpoint, obj, who), outcome in TABLE.items()]


@pytest.mark.parametrize(("endpoint", "obj", "who", "expected"), CASES)
def test_sweep(world: World, endpoint: str, obj: str, who: str, expected: str) -> None:
    _sweep_case(world, endpoint, obj, who, expected, world.headers[who])


@pytest.mark.parametrize("role", EMPTY_ROLES)
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_roles_without_permissions_are_refused_everywhere(world: World, endpoint: str, role: str) -> None:
    """Deny by default: a principal whose role grants nothing (or is unknown) gets 403 on every route,
    on the objects of its own station as well as on missing ones."""
    headers = world.headers[f"role:{role}"]
    obj = "A" if ENDPOINTS[endpoint].state else _NONE
    _sweep_case(world, endpoint, obj, "courier", "403", headers)
    if obj != _NONE:
        _sweep_case(world, endpoint, "missing", "courier", "403", headers)


# -- the table against the application and against ROLE_PERMISSIONS ---------------------------------------


def test_the_table_covers_every_route(world: World) -> None:
    routes = {(rule.endpoint, method, rule.rule) for rule in world.app.url_map.iter_rules()
              if rule.endpoint != "static" and rule.rule not in PUBLIC_PATHS
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == {(name, e.method, e.rule) for name, e in ENDPOINTS.items()}
    assert {endpoint for endpoint, _, _ in TABLE} == set(ENDPOINTS) == set(CALLS)
    for endpoint, spec in ENDPOINTS.items():
        objects = {obj for e, obj, _ in TABLE if e == endpoint}
        extra = {"assigned": {"A_unassigned"}, "requested": {"A_foreign"}, "pending": {"A_own"},
                 "subject_request": set(), "dispatched": set()}.get(
            spec.state or "", set())
        assert objects == ({"A", "B", "missing"} | extra if spec.state else {_NONE}), endpoint
        assert {who for e, _, who in TABLE if e == endpoint} == set(PRINCIPALS)


def test_the_table_agrees_with_role_permissions() -> None:
    """A principal passes the route check (any answer but 403; anonymous aside) exactly when its role
    holds the route's permission: the written-out table and ROLE_PERMISSIONS say the same thing."""
    for (endpoint, obj, who), outcome in TABLE.items():
        if who == "anon":
            assert outcome == "401"
            continue
        holds = ENDPOINTS[endpoint].permission in ROLE_PERMISSIONS[ROLE_OF[who]]
        assert (outcome != "403") == holds, (endpoint, obj, who, outcome)


def _exercised_over_http(role: str, permission: Permission) -> bool:
    return any(outcome == "ok" and ROLE_OF.get(who) == role and ENDPOINTS[endpoint].permission == permission
               for (endpoint, _, who), outcome in TABLE.items())


# -- the second check: the domain refuses by role too, whatever the route did ------------------------------

DomainCall = Callable[[Any, Any, Principal, str], Any]
DOMAIN_OPS: dict[str, tuple[Permission, DomainCall]] = {
    "create_shipment": (Permission.SHIPMENT_CREATE, lambda s, svc, p, sid: shipments.create_shipment(
        s, svc.shipment_deps, p, parse(ShipmentIn, shipment_body("D-" + secrets.token_hex(4))))),
    "create_batch": (Permission.SHIPMENT_CREATE, lambda s, svc, p, sid: list(shipments.create_batch(
        s, svc.shipment_deps, p, [parse(ShipmentIn, shipment_body("D-" + secrets.token_hex(4)))]))),
    "get_shipment": (Permission.SHIPMENT_READ, lambda s, svc, p, sid: shipments.get_shipment(s, p, sid)),
    "list_shipments": (Permission.SHIPMENT_LIST, lambda s, svc, p, sid: shipments.list_shipments(
        s, svc.shipment_deps, p, limit=1)),
    "cancel_shipment": (Permission.SHIPMENT_CANCEL, lambda s, svc, p, sid: shipments.cancel_shipment(
        s, p, sid, keyring=svc.subject_keys)),
    "issue_label": (Permission.LABEL_READ, lambda s, svc, p, sid: labels.issue_label(s, svc.label_deps, p, sid)),
    "reprint_label": (Permission.LABEL_REPRINT, lambda s, svc, p, sid: labels.reprint_label(
        s, svc.label_deps, p, sid, "damaged")),
    "issue_print_job": (Permission.PRINT_JOB_CREATE, lambda s, svc, p, sid: print_jobs.issue_print_job(
        s, svc.label_deps, p, [sid])),
    "assign": (Permission.DISPATCH_ASSIGN, lambda s, svc, p, sid: delivery.assign(
        s, p, sid, STAFF["courier_same"][0], provider=svc.provider, pickup=delivery_deps(svc).pickup)),
    "resend_code": (Permission.PICKUP_CODE_RESEND, lambda s, svc, p, sid: delivery.resend_code(
        s, delivery_deps(svc), p, sid)),
    "create_partner": (Permission.PARTNER_MANAGE, lambda s, svc, p, sid: partners.create(
        s, p, name="驿站", kind="station", agreement_ref="X-1", agreement_expires="2099-01-01")),
    "list_partners": (Permission.PARTNER_READ, lambda s, svc, p, sid: partners.listing(s, p)),
    "list_disclosures": (Permission.DISCLOSURE_READ, lambda s, svc, p, sid: partners.disclosures(s, p, limit=1)),
    "scan": (Permission.COURIER_SCAN, lambda s, svc, p, sid: delivery.scan(s, delivery_deps(svc), p, "X" * 32)),
    "call": (Permission.COURIER_CALL, lambda s, svc, p, sid: delivery.call(s, delivery_deps(svc), p, sid)),
    "deliver": (Permission.COURIER_DELIVER, lambda s, svc, p, sid: delivery.deliver(
        s, delivery_deps(svc), p, sid, "station")),
    "list_events": (Permission.AUDIT_READ, lambda s, svc, p, sid: audit.list_events(s, p, limit=1)),
    "list_checkpoints": (Permission.AUDIT_READ, lambda s, svc, p, sid: audit_checkpoints.list_checkpoints(
        s, p, audit_checkpoints.Signer(svc.keys), limit=1)),
    "create_user": (Permission.USER_MANAGE, lambda s, svc, p, sid: staff.create_user(
        s, p, "sw_new_" + secrets.token_hex(3), "courier", STATION, None, svc.codec)),
    "disable_user": (Permission.USER_MANAGE, lambda s, svc, p, sid: staff.disable_user(
        s, p, STAFF["courier_b"][0])),
    "set_phone": (Permission.USER_MANAGE, lambda s, svc, p, sid: staff.set_phone(
        s, p, STAFF["courier_b"][0], "13700009999", svc.codec)),
    "file_request": (Permission.PERSONAL_DATA_REQUEST, lambda s, svc, p, sid: privacy.file_request(
        s, privacy_deps(svc), p, sid, "complaint", "CASE-2026-0002", ["recipient.address"])),
    "read_request": (Permission.PERSONAL_DATA_REQUEST, lambda s, svc, p, sid: privacy.read_request(
        s, privacy_deps(svc), p, new_id("pdr"))),
    "approve_request": (Permission.PERSONAL_DATA_REQUEST, lambda s, svc, p, sid: privacy.approve_request(
        s, privacy_deps(svc), p, new_id("pdr"))),
    "subject_view": (Permission.SUBJECT_DATA_READ, lambda s, svc, p, sid: subject_access.view(
        s, svc.codec, p, retention_days=180)),
    "subject_log": (Permission.SUBJECT_LOG_READ, lambda s, svc, p, sid: subject_access.access_log(s, p)),
    "subject_request": (Permission.SUBJECT_REQUEST, lambda s, svc, p, sid: subject_requests.file_request(
        s, svc, p, "complaint", None, "包裹破损")),
    "subject_queue": (Permission.SUBJECT_REQUEST_DECIDE, lambda s, svc, p, sid: subject_requests.queue(
        s, p, status=None, limit=1, cursor=None)),
    "subject_decide": (Permission.SUBJECT_REQUEST_DECIDE, lambda s, svc, p, sid: subject_requests.decide(
        s, svc, p, new_id("sjr"), "complete", None)),
    "create_webhook": (Permission.WEBHOOK_MANAGE, lambda s, svc, p, sid: webhooks.create_endpoint(
        s, svc, p, HOOK_URL, ["shipment.status_changed"])),
    "list_webhooks": (Permission.WEBHOOK_MANAGE, lambda s, svc, p, sid: webhooks.list_endpoints(s, p)),
    "delete_webhook": (Permission.WEBHOOK_MANAGE, lambda s, svc, p, sid: webhooks.delete_endpoint(
        s, p, new_id("whk"))),
    "rotate_webhook": (Permission.WEBHOOK_MANAGE, lambda s, svc, p, sid: webhooks.rotate_secret(
        s, svc, p, new_id("whk"))),
    "webhook_attempts": (Permission.WEBHOOK_MANAGE, lambda s, svc, p, sid: webhooks.attempts(
        s, p, new_id("whk"), limit=1)),
    "scan_batch": (Permission.SORTING_SCAN, lambda s, svc, p, sid: sorting.scan_batch(
        s, p, ["PW0000000000000"], "arrival", keyring=svc.subject_keys)),
    "record_attempt": (Permission.COURIER_ATTEMPT, lambda s, svc, p, sid: attempts.record_attempt(
        s, delivery_deps(svc), p, sid, "not_home", max_attempts=3)),
    "shipment_events": (Permission.TRACKING_READ, lambda s, svc, p, sid: shipments.shipment_events(s, p, sid)),
    "list_alerts": (Permission.ALERT_READ, lambda s, svc, p, sid: alert_review.list_alerts(s, p, limit=1)),
    "resolve_alert": (Permission.ALERT_RESOLVE, lambda s, svc, p, sid: alert_review.resolve(
        s, svc.codec, p, new_id("alr"), "核查无异常")),
    "monthly_report": (Permission.PRIVACY_REPORT_READ, lambda s, svc, p, sid: reports.monthly_report(
        s, p, REPORT_MONTH)),
}
# Which roles the domain lets through, written out (not derived from ROLE_PERMISSIONS).
DOMAIN_ALLOWED = {
    "create_shipment": {"merchant"}, "create_batch": {"merchant"}, "get_shipment": {"merchant"},
    "list_shipments": {"merchant"}, "cancel_shipment": {"merchant"},
    "issue_label": {"merchant", "sorter"}, "reprint_label": {"merchant", "sorter"},
    "issue_print_job": {"sorter"}, "assign": {"dispatcher"}, "resend_code": {"dispatcher"},
    "create_partner": {"admin"}, "list_partners": {"courier", "dispatcher", "admin"},
    "list_disclosures": {"auditor", "privacy_officer"},
    "scan": {"courier"}, "call": {"courier"}, "deliver": {"courier"},
    "list_events": {"auditor"}, "list_checkpoints": {"auditor"},
    "create_user": {"admin"}, "disable_user": {"admin"}, "set_phone": {"admin"},
    "file_request": {"privacy_officer"}, "read_request": {"privacy_officer"}, "approve_request": {"privacy_officer"},
    "subject_view": {"subject"}, "subject_log": {"subject"}, "subject_request": {"subject"},
    "subject_queue": {"privacy_officer"}, "subject_decide": {"privacy_officer"},
    "create_webhook": {"merchant"}, "list_webhooks": {"merchant"}, "delete_webhook": {"merchant"},
    "rotate_webhook": {"merchant"}, "webhook_attempts": {"merchant"},
    "scan_batch": {"sorter"}, "record_attempt": {"courier"}, "shipment_events": {"merchant"},
    "list_alerts": {"auditor", "privacy_officer", "admin"}, "resolve_alert": {"privacy_officer", "admin"},
    "monthly_report": {"auditor", "privacy_officer"},
}
DOMAIN_ROLES = ("merchant", "courier", "dispatcher", "sorter", "auditor", "privacy_officer", "admin", "system",
                "subject", "no_such_role")
# The principal acting in the domain for each role (a real account where there is one).
DOMAIN_ACTOR = {"merchant": "merchant", "courier": "courier", "dispatcher": "dispatcher", "sorter": "sorter",
                "auditor": "auditor", "privacy_officer": "privacy_officer", "admin": "admin", "subject": "subject"}


@pytest.mark.parametrize("role", DOMAIN_ROLES)
@pytest.mark.parametrize("op", sorted(DOMAIN_OPS))
def test_domain_refuses_by_role(world: World, op: str, role: str) -> None:
    """Called directly (no route in front), each domain operation still refuses a role without the permission.
    An allowed role gets past the role check: it either succeeds or meets an object-level answer."""
    permission, fn = DOMAIN_OPS[op]
    actor = world.principals[DOMAIN_ACTOR[role]] if role in DOMAIN_ACTOR else \
        Principal("staff", new_id("usr"), role, STATION)
    sid = world.shipment("A", "assigned").id
    with world.svc.session_factory() as s:
        try:
            if role in DOMAIN_ALLOWED[op]:
                try:
                    fn(s, world.svc, actor, sid)
                except PermissionDenied:
                    pytest.fail(f"{role} refused by role on {op}")
                except DomainError:
                    pass  # an object-level answer (not theirs, wrong status): past the role check
            else:
                with pytest.raises(PermissionDenied):
                    fn(s, world.svc, actor, sid)
        finally:
            s.rollback()


def test_domain_table_agrees_with_role_permissions() -> None:
    for op, (permission, _) in DOMAIN_OPS.items():
        holders = {role for role in DOMAIN_ROLES if permission in ROLE_PERMISSIONS.get(role, frozenset())}
        assert holders == DOMAIN_ALLOWED[op], op


def test_admin_manages_users_in_the_domain(world: World) -> None:
    """USER_MANAGE has no HTTP route: the admin's permission is exercised (and succeeds) in the domain."""
    with world.svc.session_factory() as s:
        try:
            new = staff.create_user(s, world.principals["admin"], "sw_by_admin", "courier", STATION, None,
                                    world.svc.codec)
            assert new.user.role == "courier"
            user, _ = staff.disable_user(s, world.principals["admin"], "sw_by_admin")
            assert user.disabled_at is not None
            assert staff.set_phone(s, world.principals["admin"], STAFF["courier_b"][0], "13700009999",
                                   world.svc.codec) is not None
        finally:
            s.rollback()


def test_only_the_system_runs_retention(world: World) -> None:
    """RETENTION_RUN has no HTTP route: the schedule and `waybill retention run` act as the system."""
    for who in ("admin", "privacy_officer", "auditor"):
        with pytest.raises(PermissionDenied):
            retention.run(world.svc, world.principals[who], dry_run=True)
    assert retention.run(world.svc, SYSTEM, dry_run=True).due >= 0


DOMAIN_EXERCISED = {(Permission.USER_MANAGE, "admin"),  # by test_admin_manages_users_in_the_domain
                    (Permission.RETENTION_RUN, "system")}  # by test_only_the_system_runs_retention


def _grant_cases() -> list[Any]:
    cases = []
    for role, permissions in ROLE_PERMISSIONS.items():
        for permission in sorted(permissions):
            cases.append(pytest.param(role, permission, id=f"{role}-{permission}"))
    return cases


@pytest.mark.parametrize(("role", "permission"), _grant_cases())
def test_every_granted_permission_is_exercised(role: str, permission: Permission) -> None:
    """Deny by default, seen from the other side: nothing is granted that no allowed case uses."""
    assert _exercised_over_http(role, permission) or (permission, role) in DOMAIN_EXERCISED, (
        f"{role} holds {permission} but no sweep case exercises it")
    if permission in DOMAIN_ONLY:
        assert not any(spec.permission == permission for spec in ENDPOINTS.values())
