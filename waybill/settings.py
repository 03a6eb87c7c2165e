"""Service settings: read once from the environment, validated, frozen.

Every knob lives here so that nothing else in the code base reads ``os.environ``.
Secrets are not settings: they live in the key file (see :mod:`waybill.keyfile`),
and the settings only say where that file is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from printing.config import ZPL_TEXT_MODES
from waybill import key_settings
from waybill.alerts import settings as alert_settings
from waybill.alerts.settings import AlertSettings
from waybill.masking import MaskPolicy
from waybill.regions import RegionTable

CIPHERS = ("aes-256-gcm", "sm4-gcm")
ENVIRONMENTS = ("development", "production", "test")
PHONE_PROVIDERS = ("builtin", "aliyun")
SMS_PROVIDERS = ("builtin", "aliyun")
_SMS_TEMPLATE_CODE = re.compile(r"SMS_[0-9]{3,20}")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Validated, immutable configuration of one service instance."""

    env: str = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    key_file: Path = Path("var/keys.json")
    # The key store of the destroyable period keys (waybill/crypto/keystore.py); default: in the data dir.
    # It has its own backup rule (README "Retention"): a backup of it outlives the keys it destroyed.
    period_key_file: Path = Path("var/period-keys.json")
    # Where the keys come from (waybill/key_settings.py, README "Keys on more than one machine"): "builtin" (the key
    # file's master keys, the local period-key store) or "vault" (Vault/OpenBao: transit for the master keys, KV v2
    # for the period keys; one source for every node). The token is in a 0600 file; the settings say where.
    key_provider: str = "builtin"
    vault_addr: str | None = None
    vault_token_file: Path | None = None
    vault_namespace: str | None = None
    vault_ca_file: Path | None = None
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "waybill-data-keys"
    vault_kv_mount: str = "secret"
    vault_kv_prefix: str = "waybill/period-keys"
    # How long a process trusts what it cached of the keys: the active data key (after a rotation elsewhere a node
    # writes under the previous one at most this long) and a period key (destroyed elsewhere: handed out at most
    # this long). Seconds, 0.05-600.
    key_cache_ttl_s: float = 60.0
    # Personal data is destroyed this many days after a shipment's contract ends (delivery, cancellation);
    # 0: at the first retention run after it ends. Whole days of China Standard Time (see waybill/lifecycle.py).
    retention_days: int = 180
    # An active-period key (the data keys of one creation day) is retired after this many days: the data keys
    # of parcels still under way are re-wrapped under today's key, so no key outlives its shipments for long.
    active_key_days: int = 7
    cipher: str = "aes-256-gcm"
    log_level: str = "INFO"
    # Merchant API rate limit: a moving window per merchant of merchant_burst units per burst/rate seconds.
    # A request costs 1 unit; a batch 1 more per batch_item_cost (rounded up) for each of its items.
    merchant_rate_per_s: float = 200.0
    merchant_burst: int = 1000
    batch_item_cost: float = 0.5
    # Heavy requests (batches) one merchant may have in flight at once: per worker process, or across every
    # process and node when redis_url is set (leases that expire after heavy_lease_s if their process dies).
    heavy_concurrency_per_merchant: int = 2
    heavy_lease_s: int = 120
    # Staff login: per (username, client) a few free failures, then a wait that doubles up to a cap; per client
    # a failure budget across usernames; alerts (alert.login_failures) at most once per window and pattern.
    login_free_failures: int = 5
    login_backoff_base_s: int = 60
    login_backoff_max_s: int = 3600
    login_client_failures_per_minute: int = 30
    login_user_alert_failures: int = 20
    login_alert_window_s: int = 600
    # Failed unauthenticated requests per client recorded one by one, then one (counted) per refill.
    auth_failure_burst: int = 20
    auth_failure_rate_per_s: float = 0.2
    batch_max_items: int = 1000
    max_request_bytes: int = 8 * 1024 * 1024
    page_max: int = 200
    # Independent audit hash chains: an event goes to the chain of its object (else of its actor), so appends on
    # different chains never wait for each other (waybill/audit.py). Changing it moves objects' new events to
    # other chains; what was written stays verifiable where it is.
    audit_shards: int = 16
    # Signed checkpoints of every chain's head (waybill/audit/checkpoints.py): every this many minutes (0: only
    # by `waybill audit checkpoint`); and a witness outside the database, a file path or an http(s) URL.
    audit_checkpoint_minutes: int = 15
    audit_witness: str | None = None
    # Width of the phone blind index in bits: selective within a merchant, yet each value stands for
    # >= ~100 mobile numbers even within one small city (the arithmetic: waybill/crypto/vault.py).
    blind_index_bits: int = 14
    redis_url: str | None = None
    # Background tasks: a Dramatiq broker (redis:// or amqp://) run by `waybill worker`; unset, in-process.
    broker_url: str | None = None
    # Reverse proxies whose X-Forwarded-For is believed, as address ranges (checked against the socket peer).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    reprint_max: int = 3
    # Failed delivery attempts after which a parcel goes back to its sender (a refusal sends it back at once).
    max_delivery_attempts: int = 3
    # Reprints by one sorter: at most this many in one print job, and in any hour (counted from the durable
    # qr_tokens rows, so every worker process and a restart see the same count).
    reprints_per_job: int = 20
    reprints_per_sorter_per_hour: int = 60
    # The station register (CSV, see waybill/stations.py); unset: the packaged waybill/data/stations.csv.
    stations_file: Path | None = None
    # How long a printed QR token stays scannable (a label older than this needs a reprint).
    qr_token_ttl_days: int = 30
    # Courier scan quotas: a burst per minute and a total per hour (shared through Redis if configured).
    scan_per_minute: int = 30
    scan_per_hour: int = 300
    # Virtual-number bindings: lifetime while out for delivery, and call-back grace after sign-off.
    binding_ttl_hours: int = 48
    release_grace_hours: int = 72
    # How long a privacy officer's recorded request for personal data stays readable.
    privacy_request_minutes: int = 30
    # After `waybill merchants keys rotate`, how long the merchant's previous keys keep working.
    key_rotation_grace_hours: int = 24
    # Personal-data reads per privacy officer per day (Asia/Shanghai), counted in the database.
    privacy_reads_per_day: int = 50
    # Staff obligations: days a confidentiality/training attestation stays valid (GB/T 35273 11.6: at least yearly).
    training_valid_days: int = 365
    print_job_max: int = 10_000
    # Virtual numbers: "builtin" (own pool, the embedded default) or "aliyun" (Phone Number Protection),
    # whose credentials live in a 0600 JSON file (secrets are not settings; the settings say where).
    # Label printing (handed to printing.configure): the CJK font, and how ZPL prints Chinese text.
    label_font: str | None = None
    zpl_text: str = "glyphs"
    zpl_font: str = "E:SIMSUN.TTF"
    # The carrier's name in the label header (labels are the carrier's, not the software's).
    carrier_name: str = "隐私快递"
    # Shown on the self-service page /my/: where people whose waybill phone is a landline (no SMS code can reach
    # it), or who disagree with a refusal, complain. Plain text (a phone number and/or an e-mail address).
    complaint_contact: str = "隐私投诉热线 400-000-0000，邮箱 privacy@example.com"
    phone_provider: str = "builtin"
    aliyun_credentials_file: Path | None = None
    aliyun_endpoint: str = "https://dyplsapi.aliyuncs.com/"
    # GET /metrics: when set, a mode-0600 file holding the bearer token a scraper must send (secrets are not
    # settings; the setting says where the token is). Unset: /metrics answers anyone who reaches it.
    metrics_token_file: Path | None = None
    # prometheus_client's multiprocess mode (gunicorn with several workers): its own variable,
    # PROMETHEUS_MULTIPROC_DIR, read here so that nothing else reads the environment.
    prometheus_multiproc_dir: Path | None = None
    # SMS: "builtin" (encrypted outbox) or "aliyun" (SendSms; AccessKey in a 0600 JSON file; name -> SMS_xxx).
    sms_provider: str = "builtin"
    sms_credentials_file: Path | None = None
    sms_sign_name: str | None = None
    sms_template_codes: tuple[tuple[str, str], ...] = ()
    sms_endpoint: str = "https://dysmsapi.aliyuncs.com/"
    # Messages to one mobile number in any hour, all templates together (SMS bombing through code requests).
    sms_per_phone_per_hour: int = 20
    # The privacy notice shown at collection (JSON, see waybill/consent.py); unset: waybill/data/privacy_notice.json.
    privacy_notice_file: Path | None = None
    mask_policy: MaskPolicy = field(default_factory=MaskPolicy)
    # Administrative divisions added to or renaming rows of the packaged list (waybill/regions.py).
    regions_extra_file: Path | None = None
    # Data subjects' self-service (courier_api/subjects): a one-time SMS code's lifetime, the session it opens,
    # and how many challenges one phone (by keyed hash), one waybill and one client may ask for per hour.
    subject_code_ttl_s: int = 300
    subject_token_ttl_s: int = 900
    subject_challenges_per_phone_per_hour: int = 5
    subject_challenges_per_waybill_per_hour: int = 10
    subject_challenges_per_client_per_hour: int = 30
    # A subject request is answered within this many calendar days (GB/T 35273 8.7 a: at most 30) or, for the
    # types named in subject_request_working_days ("delete=15": 8.5 b), that many working days if earlier.
    subject_request_days: int = 30
    subject_request_working_days: tuple[tuple[str, int], ...] = (("delete", 15),)
    # (The overdue alert's lead time is the rule's threshold: WAYBILL_ALERT_SUBJECT_REQUEST_OVERDUE_WARN_DAYS.)
    # Merchant webhooks (waybill/webhooks): URLs resolving to private, loopback, link-local, CGNAT, multicast,
    # reserved or cloud-metadata addresses are refused at creation and at every delivery unless this is set
    # (WAYBILL_WEBHOOK_ALLOW_PRIVATE=1: development, tests, an on-premises receiver).
    webhook_allow_private: bool = False
    # Incident register (waybill/incidents): hours from detection to the regulator report for significant (较大)
    # and graver incidents (the CAC incident-reporting measures in force since 2025-11-01: 4 hours), and the
    # contact an incident notice SMS names (a template parameter: at most 35 characters).
    incident_report_hours: int = 4
    incident_contact: str = "个人信息保护负责人 400-000-0000"
    # Alert rules' thresholds (WAYBILL_ALERT_<RULE>_<NAME>) and the security endpoint: waybill/alerts/settings.py.
    alerts: AlertSettings = field(default_factory=AlertSettings)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_ENV_PREFIX = "WAYBILL_"
log = logging.getLogger("waybill.settings")
# Fields that are not read from a WAYBILL_* variable: set by code, or read from another variable.
NOT_FROM_ENV = frozenset({"mask_policy", "max_request_bytes", "prometheus_multiproc_dir", "alerts"})
# WAYBILL_* variables that the test suite reads (they are not settings of the service).
TEST_VARIABLES = frozenset({"WAYBILL_TEST_DATABASE_URL", "WAYBILL_TEST_REDIS_URL", "WAYBILL_UPDATE_GOLDEN",
                            "WAYBILL_TEST_BROWSER"})


def known_variables() -> frozenset[str]:
    """Every WAYBILL_* variable that means something: the settings read from the environment, and the tests'."""
    names = {_ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings) if f.name not in NOT_FROM_ENV}
    return frozenset(names) | TEST_VARIABLES | alert_settings.variables()


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``(variable, closest known name or None)`` for every WAYBILL_* variable nothing reads (a misspelling)."""
    known = known_variables()
    # Compared without the common prefix, which would make every name look close to every other.
    suffixes = sorted(k[len(_ENV_PREFIX):] for k in known)
    found: list[tuple[str, str | None]] = []
    for name in sorted(k for k in environ if k.startswith(_ENV_PREFIX) and k not in known):
        close = difflib.get_close_matches(name[len(_ENV_PREFIX):], suffixes, n=1, cutoff=0.6)
        found.append((name, _ENV_PREFIX + close[0] if close else None))
    return found


def _warn_unknown(environ: Mapping[str, str]) -> None:
    # The variable's name only, never its value (a misspelt WAYBILL_DATABASE_URL holds a password).
    for name, close in unknown_variables(environ):
        hint = f"; did you mean {close}?" if close else ""
        log.warning(f"unknown setting {name} is ignored{hint}", extra={"setting": name, "suggestion": close})


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{_ENV_PREFIX}{name.upper()} must be an integer") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{_ENV_PREFIX}{name.upper()} must be between {lo} and {hi}")
    return value


def _float(name: str, raw: str, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{_ENV_PREFIX}{name.upper()} must be a number") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{_ENV_PREFIX}{name.upper()} must be between {lo} and {hi}")
    return value


def _networks(raw: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not raw:
        return ()
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError("WAYBILL_TRUSTED_PROXIES must be comma-separated addresses or CIDR ranges") from None


def _broker_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not raw.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise SettingsError("WAYBILL_BROKER_URL must be a redis://, rediss://, amqp:// or amqps:// URL")
    return raw


def _data_file(name: str, raw: str | None, check: Callable[[Path], object]) -> Path | None:
    """A data file named by a setting, parsed now so a malformed row stops the start, not a request."""
    if raw is None:
        return None
    path = Path(raw)
    try:
        check(path)
    except (OSError, ValueError) as exc:
        detail = exc if isinstance(exc, ValueError) else "cannot be read"
        raise SettingsError(f"{_ENV_PREFIX}{name.upper()}: {detail}") from None
    return path


SUBJECT_REQUEST_TYPES = ("correct", "delete", "withdraw_consent", "complaint")


def _working_days(raw: str | None) -> tuple[tuple[str, int], ...]:
    """``delete=15,complaint=10``: per request type, a deadline in working days (may be empty: ``""``)."""
    if raw is None:
        return Settings.subject_request_working_days
    found: dict[str, int] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, days = part.partition("=")
        if not sep or name.strip() not in SUBJECT_REQUEST_TYPES or not days.strip().isdigit() \
                or not 1 <= int(days) <= 30:
            raise SettingsError("WAYBILL_SUBJECT_REQUEST_WORKING_DAYS must be like delete=15 "
                                f"(types: {', '.join(SUBJECT_REQUEST_TYPES)}; 1-30 days)")
        found[name.strip()] = int(days)
    return tuple(sorted(found.items()))


def _flag(name: str, raw: str | None) -> bool:
    """A boolean setting: 1/true/yes/on or 0/false/no/off (unset: false)."""
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{_ENV_PREFIX}{name.upper()} must be 1 or 0")


def _load_notice(path: Path) -> object:
    from waybill.consent import PrivacyNotice

    return PrivacyNotice.load(path)


def _sms_settings(get: Any) -> dict[str, Any]:
    """SMS settings; that the codes cover every template is checked by waybill.messages.make_provider."""
    provider = (get("sms_provider") or "builtin").lower()
    codes: Any = None
    if provider not in SMS_PROVIDERS:
        raise SettingsError(f"WAYBILL_SMS_PROVIDER must be one of {', '.join(SMS_PROVIDERS)}")
    with contextlib.suppress(ValueError):
        codes = json.loads(get("sms_template_codes") or "{}")
    if not isinstance(codes, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              and _SMS_TEMPLATE_CODE.fullmatch(v) for k, v in codes.items()):
        raise SettingsError("WAYBILL_SMS_TEMPLATE_CODES must be a JSON object of template name -> SMS_xxx")
    credentials, sign_name = get("sms_credentials_file"), get("sms_sign_name")
    if provider == "aliyun" and not (credentials and sign_name):
        raise SettingsError("WAYBILL_SMS_CREDENTIALS_FILE and WAYBILL_SMS_SIGN_NAME are required when "
                            "WAYBILL_SMS_PROVIDER is aliyun")
    if sign_name is not None and not re.fullmatch(r"[\u4e00-\u9fffA-Za-z0-9]{2,12}", sign_name):
        raise SettingsError("WAYBILL_SMS_SIGN_NAME must be 2-12 letters, digits or Chinese characters")
    endpoint = get("sms_endpoint") or Settings.sms_endpoint
    if not endpoint.startswith(("https://", "http://")):
        raise SettingsError("WAYBILL_SMS_ENDPOINT must be an http(s) URL")
    raw = get("sms_per_phone_per_hour")
    return {"sms_provider": provider, "sms_credentials_file": Path(credentials) if credentials else None,
            "sms_sign_name": sign_name, "sms_template_codes": tuple(sorted(codes.items())), "sms_endpoint": endpoint,
            "sms_per_phone_per_hour": Settings.sms_per_phone_per_hour if raw is None
            else _int("sms_per_phone_per_hour", raw, 1, 1000),
            "privacy_notice_file": _data_file("privacy_notice_file", get("privacy_notice_file"), _load_notice)}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (default: the process environment) plus overrides.

    Overrides use field names (``database_url=...``) and win over the environment; they are how
    tests and the app factory configure an instance without touching ``os.environ``.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    _warn_unknown(env)

    def get(name: str) -> str | None:
        if name in overrides:
            value = overrides[name]
            return None if value is None else str(value)
        return env.get(_ENV_PREFIX + name.upper()) or None

    mode = get("env") or "development"
    if mode not in ENVIRONMENTS:
        raise SettingsError(f"WAYBILL_ENV must be one of {', '.join(ENVIRONMENTS)}")
    data_dir = Path(get("data_dir") or "var")
    database_url = get("database_url") or f"sqlite:///{(data_dir / 'waybill.db').as_posix()}"
    if not database_url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise SettingsError("WAYBILL_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
    if database_url.startswith("postgresql:"):
        # psycopg 3 is the only PostgreSQL driver we ship; make the URL say so.
        database_url = "postgresql+psycopg:" + database_url[len("postgresql:"):]
    key_file_raw = get("key_file")
    if mode == "production" and not key_file_raw:
        raise SettingsError("WAYBILL_KEY_FILE is required in production (no key file is generated there)")
    key_file = Path(key_file_raw) if key_file_raw else data_dir / "keys.json"
    cipher = (get("cipher") or "aes-256-gcm").lower()
    if cipher not in CIPHERS:
        raise SettingsError(f"WAYBILL_CIPHER must be one of {', '.join(CIPHERS)}")

    phone_provider = (get("phone_provider") or "builtin").lower()
    if phone_provider not in PHONE_PROVIDERS:
        raise SettingsError(f"WAYBILL_PHONE_PROVIDER must be one of {', '.join(PHONE_PROVIDERS)}")
    credentials_raw = get("aliyun_credentials_file")
    if phone_provider == "aliyun" and not credentials_raw:
        raise SettingsError("WAYBILL_ALIYUN_CREDENTIALS_FILE is required when WAYBILL_PHONE_PROVIDER is aliyun")
    aliyun_endpoint = get("aliyun_endpoint") or Settings.aliyun_endpoint
    if not aliyun_endpoint.startswith(("https://", "http://")):
        raise SettingsError("WAYBILL_ALIYUN_ENDPOINT must be an http(s) URL")

    zpl_text = (get("zpl_text") or "glyphs").lower()
    if zpl_text not in ZPL_TEXT_MODES:
        raise SettingsError(f"WAYBILL_ZPL_TEXT must be one of {', '.join(ZPL_TEXT_MODES)}")
    zpl_font = get("zpl_font") or Settings.zpl_font
    # It goes into printer commands verbatim: a drive letter and a plain file name, nothing ZPL could parse.
    if not re.fullmatch(r"[A-Z]:[A-Za-z0-9_.-]{1,40}", zpl_font):
        raise SettingsError("WAYBILL_ZPL_FONT must be a printer font path like E:SIMSUN.TTF")

    carrier_name = get("carrier_name") or Settings.carrier_name
    # Printed on every label and sent in printer commands: a short name of letters, digits and CJK.
    if not re.fullmatch(r"[\u4e00-\u9fffA-Za-z0-9 ()（）·&.-]{1,16}", carrier_name):
        raise SettingsError("WAYBILL_CARRIER_NAME must be 1-16 letters, digits or Chinese characters")

    complaint_contact = get("complaint_contact") or Settings.complaint_contact
    # Shown to people on /my/: one short line of text, nothing a page could take for markup or layout.
    if len(complaint_contact) > 120 or not complaint_contact.isprintable() or re.search(r"[<>]", complaint_contact):
        raise SettingsError("WAYBILL_COMPLAINT_CONTACT must be one line of at most 120 characters, without < or >")
    if mode == "production" and complaint_contact == Settings.complaint_contact:
        log.warning("WAYBILL_COMPLAINT_CONTACT is the placeholder default: /my/ shows it to people who cannot "
                    "receive an SMS code; set the real complaint line", extra={"setting": "WAYBILL_COMPLAINT_CONTACT"})

    incident_contact = get("incident_contact") or Settings.incident_contact
    # Sent in every incident notice SMS (a template parameter): one short line, no placeholder syntax.
    if len(incident_contact) > 35 or not incident_contact.isprintable() or "${" in incident_contact:
        raise SettingsError("WAYBILL_INCIDENT_CONTACT must be one line of at most 35 characters")

    metrics_token_raw = get("metrics_token_file")
    multiproc_raw = overrides.get("prometheus_multiproc_dir") or env.get("PROMETHEUS_MULTIPROC_DIR") or None
    multiproc_dir = Path(str(multiproc_raw)) if multiproc_raw else None
    if multiproc_dir is not None and not multiproc_dir.is_dir():
        raise SettingsError("PROMETHEUS_MULTIPROC_DIR must be an existing directory")

    try:
        keys_values = key_settings.load(get, mode)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    values: dict[str, Any] = {
        **keys_values,
        **_sms_settings(get),
        "regions_extra_file": _data_file("regions_extra_file", get("regions_extra_file"), RegionTable.load),
        "metrics_token_file": Path(metrics_token_raw) if metrics_token_raw else None,
        "prometheus_multiproc_dir": multiproc_dir,
        "label_font": get("label_font"),
        "carrier_name": carrier_name,
        "complaint_contact": complaint_contact,
        "incident_contact": incident_contact,
        "zpl_text": zpl_text,
        "zpl_font": zpl_font,
        "phone_provider": phone_provider,
        "aliyun_credentials_file": Path(credentials_raw) if credentials_raw else None,
        "aliyun_endpoint": aliyun_endpoint,
        "env": mode,
        "data_dir": data_dir,
        "database_url": database_url,
        "key_file": key_file,
        # In the data dir, not beside the key file: the service writes it every day (a key file's directory may
        # be read-only, as in deploy/), and every process of the host must see the same store.
        "period_key_file": Path(pk) if (pk := get("period_key_file")) else data_dir / "period-keys.json",
        "cipher": cipher,
        "log_level": (get("log_level") or "INFO").upper(),
        "redis_url": get("redis_url"),
        "broker_url": _broker_url(get("broker_url")),
        "trusted_proxies": _networks(get("trusted_proxies")),
        "webhook_allow_private": _flag("webhook_allow_private", get("webhook_allow_private")),
    }
    if (raw := get("merchant_rate_per_s")) is not None:
        values["merchant_rate_per_s"] = _float("merchant_rate_per_s", raw, 0.01, 1e6)
    if (raw := get("auth_failure_burst")) is not None:
        values["auth_failure_burst"] = _int("auth_failure_burst", raw, 1, 10**7)
    if (raw := get("auth_failure_rate_per_s")) is not None:
        values["auth_failure_rate_per_s"] = _float("auth_failure_rate_per_s", raw, 0.001, 1e6)
    if (raw := get("merchant_burst")) is not None:
        values["merchant_burst"] = _int("merchant_burst", raw, 1, 10**7)
    if (raw := get("batch_max_items")) is not None:
        values["batch_max_items"] = _int("batch_max_items", raw, 1, 1000)
    if (raw := get("audit_shards")) is not None:
        values["audit_shards"] = _int("audit_shards", raw, 1, 256)
    if (raw := get("audit_checkpoint_minutes")) is not None:
        values["audit_checkpoint_minutes"] = _int("audit_checkpoint_minutes", raw, 0, 7 * 24 * 60)
    if (raw := get("audit_witness")) is not None:
        if "://" in raw and not raw.startswith(("https://", "http://")):
            raise SettingsError("WAYBILL_AUDIT_WITNESS must be a file path or an http(s) URL")
        values["audit_witness"] = raw
    if (raw := get("page_max")) is not None:
        values["page_max"] = _int("page_max", raw, 1, 1000)
    if (raw := get("reprint_max")) is not None:
        values["reprint_max"] = _int("reprint_max", raw, 0, 100)
    for name, lo, hi in (("qr_token_ttl_days", 1, 365), ("scan_per_minute", 1, 10_000), ("scan_per_hour", 1, 1_000_000),
                         ("binding_ttl_hours", 1, 24 * 30), ("release_grace_hours", 0, 24 * 30),
                         ("privacy_request_minutes", 1, 24 * 60), ("key_rotation_grace_hours", 0, 24 * 30),
                         ("privacy_reads_per_day", 1, 100_000), ("retention_days", 0, 3650),
                         ("training_valid_days", 1, 3660),
                         ("active_key_days", 1, 90), ("subject_code_ttl_s", 60, 3600),
                         ("subject_token_ttl_s", 60, 3600), ("subject_challenges_per_phone_per_hour", 1, 1000),
                         ("subject_challenges_per_waybill_per_hour", 1, 1000),
                         ("subject_challenges_per_client_per_hour", 1, 100_000), ("subject_request_days", 1, 30),
                         ("max_delivery_attempts", 1, 20), ("incident_report_hours", 1, 24 * 30)):
        if (raw := get(name)) is not None:
            values[name] = _int(name, raw, lo, hi)
    for name, lo, hi in (("reprints_per_job", 1, 200), ("reprints_per_sorter_per_hour", 1, 10_000)):
        if (raw := get(name)) is not None:
            values[name] = _int(name, raw, lo, hi)
    if values.get("reprints_per_job", Settings.reprints_per_job) > values.get(
            "reprints_per_sorter_per_hour", Settings.reprints_per_sorter_per_hour):
        raise SettingsError("WAYBILL_REPRINTS_PER_JOB must not exceed WAYBILL_REPRINTS_PER_SORTER_PER_HOUR")
    if "subject_request_working_days" in overrides and not isinstance(overrides["subject_request_working_days"], str):
        values["subject_request_working_days"] = tuple(overrides["subject_request_working_days"])
    else:
        raw_wd = overrides.get("subject_request_working_days", env.get("WAYBILL_SUBJECT_REQUEST_WORKING_DAYS"))
        values["subject_request_working_days"] = _working_days(None if raw_wd is None else str(raw_wd))
    stations_raw = get("stations_file")
    values["stations_file"] = Path(stations_raw) if stations_raw else None
    if (raw := get("print_job_max")) is not None:
        values["print_job_max"] = _int("print_job_max", raw, 1, 10_000)
    if (raw := get("batch_item_cost")) is not None:
        values["batch_item_cost"] = _float("batch_item_cost", raw, 0.01, 10.0)
    for name, lo, hi in (("heavy_concurrency_per_merchant", 1, 1000), ("heavy_lease_s", 1, 86400),
                         ("login_free_failures", 1, 1000),
                         ("login_backoff_base_s", 1, 86400), ("login_backoff_max_s", 1, 7 * 86400),
                         ("login_client_failures_per_minute", 1, 100_000), ("login_user_alert_failures", 1, 10**6),
                         ("login_alert_window_s", 1, 86400)):
        if (raw := get(name)) is not None:
            values[name] = _int(name, raw, lo, hi)
    if (raw := get("blind_index_bits")) is not None:
        values["blind_index_bits"] = _int("blind_index_bits", raw, 10, 16)
    if values["log_level"] not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError("WAYBILL_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

    policy = overrides.get("mask_policy")
    if isinstance(policy, MaskPolicy):
        values["mask_policy"] = policy
    # A policy weaker than the national floor is a configuration error, refused at start-up.
    mask_policy: MaskPolicy = values.get("mask_policy", MaskPolicy())
    try:
        mask_policy.validate()
    except ValueError as exc:
        raise SettingsError(f"masking policy rejected: {exc}") from None
    values["mask_policy"] = mask_policy
    found = overrides.get("alerts")
    try:
        values["alerts"] = found if isinstance(found, AlertSettings) else alert_settings.load(get, _flag)
    except alert_settings.AlertSettingsError as exc:
        raise SettingsError(str(exc)) from None
    if mode == "production" and not values["alerts"].enabled:
        # The alerts are the oversight the seed rules ask for (real-time monitoring of access): never off there.
        raise SettingsError("WAYBILL_ALERTS_ENABLED=0 is refused in production")
    for name, value in overrides.items():
        if name not in values and name in {f.name for f in dataclasses.fields(Settings)}:
            values[name] = value
    settings = Settings(**values)
    _check_budgets(settings)
    return settings


def _check_budgets(settings: Settings) -> None:
    """Limits that contradict each other are configuration errors, refused at start-up."""
    largest_batch = 1 + math.ceil(settings.batch_max_items * settings.batch_item_cost)
    if largest_batch > settings.merchant_burst:
        raise SettingsError(f"WAYBILL_MERCHANT_BURST must be at least {largest_batch}: a batch of "
                            f"WAYBILL_BATCH_MAX_ITEMS items costs that much and could never pass")
    if settings.login_backoff_max_s < settings.login_backoff_base_s:
        raise SettingsError("WAYBILL_LOGIN_BACKOFF_MAX_S must be at least WAYBILL_LOGIN_BACKOFF_BASE_S")
