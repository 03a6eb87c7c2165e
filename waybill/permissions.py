"""Permissions as named values, the roles that hold them, and the acting principal.

Checked twice: by role on the route (:func:`waybill.web.auth.requires`) and by object
(ownership, assignment) inside the domain. Anything not granted here is denied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from waybill.errors import PermissionDenied


class Permission(StrEnum):
    SHIPMENT_CREATE = "shipment:create"
    SHIPMENT_READ = "shipment:read"
    SHIPMENT_LIST = "shipment:list"
    SHIPMENT_CANCEL = "shipment:cancel"
    LABEL_READ = "label:read"
    LABEL_REPRINT = "label:reprint"
    PRINT_JOB_CREATE = "print_job:create"
    DISPATCH_ASSIGN = "dispatch:assign"
    COURIER_SCAN = "courier:scan"
    COURIER_CALL = "courier:call"
    COURIER_DELIVER = "courier:deliver"
    AUDIT_READ = "audit:read"
    PERSONAL_DATA_REQUEST = "personal_data:request"
    USER_MANAGE = "user:manage"
    # A data subject (sender or recipient, verified by an SMS code) on their own party of one shipment.
    SUBJECT_DATA_READ = "subject:data_read"
    SUBJECT_LOG_READ = "subject:access_log_read"
    SUBJECT_REQUEST = "subject:request"
    # Privacy officers deciding subjects' requests.
    SUBJECT_REQUEST_DECIDE = "subject_request:decide"
    # Retention: destruction records are read by privacy officers and auditors; holds placed by privacy officers;
    # runs made by the system (the schedule, `waybill retention run`).
    DESTRUCTION_READ = "destruction:read"
    PRIVACY_HOLD = "privacy:hold"
    RETENTION_RUN = "retention:run"
    # The last mile: a dispatcher resends a pickup code (which unlocks handover); admins register partners
    # (lockers, stations, franchise outlets, authorities), whom dispatchers and couriers list; privacy officers
    # and auditors read what was disclosed to them.
    PICKUP_CODE_RESEND = "pickup_code:resend"
    PARTNER_MANAGE = "partner:manage"
    PARTNER_READ = "partner:read"
    DISCLOSURE_READ = "disclosure:read"
    # Merchants' own webhook endpoints (waybill/webhooks): create, list, remove, rotate, read the delivery log.
    WEBHOOK_MANAGE = "webhook:manage"
    # Movement through the network: sorting-centre scans, failed delivery attempts, the merchant's tracking history.
    SORTING_SCAN = "sorting:scan"
    COURIER_ATTEMPT = "courier:attempt"
    TRACKING_READ = "tracking:read"
    # The incident register (waybill/incidents): privacy officers record, notify and report; auditors read.
    INCIDENT_MANAGE = "incident:manage"
    INCIDENT_READ = "incident:read"
    # Oversight: alerts (waybill/alerts) are read by auditors, privacy officers and admins, resolved by the latter two.
    ALERT_READ = "alert:read"
    ALERT_RESOLVE = "alert:resolve"
    # The monthly privacy report (内部监督检查): counts only, read by privacy officers and auditors.
    PRIVACY_REPORT_READ = "privacy_report:read"


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "merchant": frozenset({
        Permission.SHIPMENT_CREATE, Permission.SHIPMENT_READ, Permission.SHIPMENT_LIST,
        Permission.SHIPMENT_CANCEL, Permission.LABEL_READ, Permission.LABEL_REPRINT, Permission.WEBHOOK_MANAGE,
        Permission.TRACKING_READ,
    }),
    "sorter": frozenset({Permission.LABEL_READ, Permission.LABEL_REPRINT, Permission.PRINT_JOB_CREATE,
                         Permission.SORTING_SCAN}),
    "courier": frozenset({Permission.COURIER_SCAN, Permission.COURIER_CALL, Permission.COURIER_DELIVER,
                          Permission.PARTNER_READ, Permission.COURIER_ATTEMPT}),
    "dispatcher": frozenset({Permission.DISPATCH_ASSIGN, Permission.PICKUP_CODE_RESEND, Permission.PARTNER_READ}),
    "auditor": frozenset({Permission.AUDIT_READ, Permission.DESTRUCTION_READ, Permission.DISCLOSURE_READ,
                          Permission.INCIDENT_READ, Permission.ALERT_READ, Permission.PRIVACY_REPORT_READ}),
    # Full access only per recorded request with a purpose (GB/T 35273 7.1 e).
    "privacy_officer": frozenset({Permission.PERSONAL_DATA_REQUEST, Permission.DESTRUCTION_READ,
                                  Permission.PRIVACY_HOLD, Permission.SUBJECT_REQUEST_DECIDE,
                                  Permission.DISCLOSURE_READ, Permission.INCIDENT_MANAGE,
                                  Permission.INCIDENT_READ, Permission.ALERT_READ, Permission.ALERT_RESOLVE,
                                  Permission.PRIVACY_REPORT_READ}),
    # Separation of duties: admins manage accounts and keys and read no personal data.
    "admin": frozenset({Permission.USER_MANAGE, Permission.PARTNER_MANAGE, Permission.PARTNER_READ,
                        Permission.ALERT_READ, Permission.ALERT_RESOLVE}),
    "system": frozenset({Permission.RETENTION_RUN}),
    # Never a staff role: a short-lived session scoped to one party of one shipment (courier_api/subjects).
    "subject": frozenset({Permission.SUBJECT_DATA_READ, Permission.SUBJECT_LOG_READ, Permission.SUBJECT_REQUEST}),
}
# Permissions whose routes decrypt, reveal or hand on a party's personal data: a staff member whose confidentiality
# agreement and training have lapsed (WAYBILL_TRAINING_VALID_DAYS) is refused them with `403 obligations_lapsed`
# by the route check, before any object is looked up (waybill.web.auth.requires; courier_api/obligations.py).
PERSONAL_DATA_PERMISSIONS = frozenset({
    Permission.COURIER_SCAN, Permission.COURIER_CALL, Permission.COURIER_DELIVER,
    Permission.PERSONAL_DATA_REQUEST, Permission.SUBJECT_REQUEST_DECIDE,
})
STAFF_ROLES = ("courier", "dispatcher", "sorter", "auditor", "privacy_officer", "admin")
MFA_ROLES = frozenset({"auditor", "privacy_officer", "admin"})
#: Staff roles that reach personal data (hold a personal-data permission): their accounts need a background check.
PERSONAL_DATA_ROLES = frozenset(role for role in STAFF_ROLES if ROLE_PERMISSIONS[role] & PERSONAL_DATA_PERMISSIONS)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a merchant (API key), a staff user, or the system (CLI)."""

    kind: str  # "merchant" | "staff" | "system" | "subject"
    id: str
    role: str
    station: str | None = None
    # A merchant using a test-mode API key: its shipments are flagged and never reach a printer or courier.
    test_mode: bool = False
    # A staff member whose confidentiality agreement or training has lapsed: refused personal-data permissions.
    obligations_lapsed: bool = False

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDenied()


SYSTEM = Principal(kind="system", id="cli", role="system")
