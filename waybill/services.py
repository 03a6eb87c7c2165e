"""The service container: everything a request or a CLI command needs, built once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from limits.storage import RedisStorage, Storage
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

import printing
from waybill import audit, db, keyfile, messages
from waybill.alerts import store as alert_store
from waybill.consent import PrivacyNotice
from waybill.crypto.keystore import KeyStore
from waybill.crypto.kms import MasterKeys
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import FieldCodec, Vault, ensure_active_data_key
from waybill.inflight import ConcurrencyLimiter, InFlightLimiter, RedisConcurrencyLimiter
from waybill.key_sources import make_keystore, make_master_keys
from waybill.labels import LabelDeps
from waybill.messages.base import MessageProvider
from waybill.metrics import Metrics
from waybill.ratelimit import FailureThrottle, RateLimiter, WindowLimiter, limit_storage
from waybill.readiness import Readiness
from waybill.regions import RegionTable
from waybill.routing import RoutingTable
from waybill.settings import Settings, SettingsError
from waybill.shipments import ShipmentDeps
from waybill.stations import StationRegister
from waybill.uow import unit_of_work
from waybill.virtual_numbers import make_provider
from waybill.virtual_numbers.base import VirtualNumberProvider
from waybill.virtual_numbers.builtin import development_pool_problem, seed_development_pool
from waybill.virtual_numbers.models import VnBindingEndpoint, VnCall
from waybill.virtual_numbers.store import ENDPOINT_KEY_VERSION, derive_endpoint_key, upgrade_legacy_hashes

log = logging.getLogger("waybill.services")


@dataclass(frozen=True, slots=True)
class Services:
    """The service registry: everything a request, a command or a task needs, built once per process by
    :func:`build` and never changed afterwards (tests swap a part with ``dataclasses.replace``). Parts with
    more than one implementation are typed by their Protocol (codec, limiter, provider)."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    keys: keyfile.KeyMaterial
    codec: FieldCodec
    # Each party's own data key (waybill/crypto/subject_keys.py): what retention and deletions destroy.
    subject_keys: SubjectKeyring
    # Where the keys come from (waybill/key_sources.py): the data keys' master keys and the period-key store,
    # the key file's and a local file, or Vault/OpenBao shared by every node.
    master_keys: MasterKeys
    keystore: KeyStore
    routing: RoutingTable
    regions: RegionTable  # GB/T 2260 divisions every party's region is checked against
    stations: StationRegister  # every station and hub; staff of station roles name one of them
    # Where every limit of this process counts: Redis when WAYBILL_REDIS_URL is set (shared by every process and
    # node; down: the limits fail closed with 503), else this process's memory. The courier side uses it too.
    limit_storage: Storage
    merchant_limiter: RateLimiter  # per merchant, in units: a request 1, a batch item batch_item_cost
    # Heavy requests (batches) in flight per merchant: leases in Redis when configured, else in this process.
    heavy_requests: InFlightLimiter
    provider: VirtualNumberProvider
    messages: MessageProvider  # SMS to people: the built-in encrypted outbox or Aliyun SendSms
    privacy_notice: PrivacyNotice  # the notice shown at collection; shipments record its version and consents
    metrics: Metrics
    readiness: Readiness  # the /readyz checks; their clients are made on the first probe
    # Failed unauthenticated requests per client: what a flood of bad keys or receipt-token guesses may write.
    auth_failures: FailureThrottle
    # Sessions for long reads outside any request's transaction (`audit verify`): on SQLite they begin deferred
    # (a reader in WAL mode blocks no writer), where the service's own sessions take the write lock at once.
    # Read-only: they carry no audit hook.
    read_session_factory: sessionmaker[Session]

    @property
    def label_deps(self) -> LabelDeps:
        return LabelDeps(token_key=self.keys.secret("qr_token"), reprint_max=self.settings.reprint_max,
                         carrier=self.settings.carrier_name, routing=self.routing, codec=self.codec,
                         reprints_per_job=self.settings.reprints_per_job,
                         reprints_per_hour=self.settings.reprints_per_sorter_per_hour, keyring=self.subject_keys)

    @property
    def shipment_deps(self) -> ShipmentDeps:
        return ShipmentDeps(codec=self.codec, routing=self.routing, regions=self.regions,
                            policy=self.settings.mask_policy, fingerprint_key=self.keys.secret("idempotency"),
                            keyring=self.subject_keys, notice=self.privacy_notice)


def initialise(settings: Settings) -> tuple[keyfile.KeyMaterial, Engine, bool]:
    """`waybill init`: data dir, key file (not in production), schema, an active data key.

    After migrating, the live schema is compared with the models (``alembic check``'s comparison): a
    database whose tables differ from the head revision (a migration edited after it ran, a manual
    change) raises :class:`waybill.db.SchemaMismatch` instead of serving requests that would fail.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkdir leaves an existing directory's mode alone: a 0777 data dir (made by hand, a restore) is tightened.
    db.owner_only(settings.data_dir, 0o700)
    keys, created = keyfile.load_or_create(settings.key_file, allow_create=not settings.is_production)
    engine = db.make_engine(settings.database_url)
    try:
        # The keys go along: a data migration may have to encrypt or re-index existing rows.
        db.upgrade(engine, keys=keys, cipher=settings.cipher, blind_index_bits=settings.blind_index_bits,
                   keystore=make_keystore(settings))
        db.check_schema(engine)
        # The first data key goes under the configured master keys (a KMS's transit key when there is one).
        ensure_active_data_key(engine, make_master_keys(settings, keys), settings.cipher)
    except BaseException:
        engine.dispose()
        raise
    _upgrade_phone_hashes(settings, engine, keys)
    if settings.phone_provider == "builtin":
        _check_builtin_pool(settings, engine)
    return keys, engine, created


def load_stations(settings: Settings, routing: RoutingTable) -> StationRegister:
    """The station register named by the settings (or the packaged one), checked to cover every routed station.

    A bad or incomplete register fails the start with ``SettingsError`` naming the file's problem.
    """
    try:
        stations = StationRegister.load(settings.stations_file)
        stations.check_routing(routing)
    except OSError as exc:
        raise SettingsError(f"WAYBILL_STATIONS_FILE cannot be read ({type(exc).__name__})") from None
    except ValueError as exc:
        raise SettingsError(f"station register rejected: {exc}") from None
    return stations


def _upgrade_phone_hashes(settings: Settings, engine: Engine, keys: keyfile.KeyMaterial) -> None:
    """Re-key endpoint and caller hashes still keyed from the blind-index secret (once, after migration 0012)."""
    with unit_of_work(db.make_session_factory(engine)) as tx:
        session = tx.session
        legacy = session.scalar(select(func.count()).select_from(VnBindingEndpoint).where(
            VnBindingEndpoint.key_version < ENDPOINT_KEY_VERSION)) or session.scalar(
            select(func.count()).select_from(VnCall).where(VnCall.key_version < ENDPOINT_KEY_VERSION))
        if not legacy:
            return
        # On SQLite the vault reads data keys through a non-locking engine: this session holds the write lock.
        key_engine = db.make_engine(settings.database_url, write_lock=False) if settings.is_sqlite else engine
        try:
            codec = Vault(key_engine, settings.key_file, settings.cipher,
                          blind_index_bits=settings.blind_index_bits, material=keys,
                          master_keys=make_master_keys(settings, keys))
            done = upgrade_legacy_hashes(session, codec, derive_endpoint_key(keys))
        finally:
            if key_engine is not engine:
                key_engine.dispose()
    log.warning("virtual number hashes re-keyed", extra=done)


def _check_builtin_pool(settings: Settings, engine: Engine) -> None:
    """Development: an empty built-in pool gets the development numbers, so a fresh install can call at once.
    Production: nothing is seeded; an empty pool or one with development numbers is logged as a warning
    (every call would answer 503, or hand out placeholder numbers)."""
    with unit_of_work(db.make_session_factory(engine)) as tx:
        if settings.env == "development":
            seed_development_pool(tx.session)
        elif settings.is_production:
            problem = development_pool_problem(tx.session)
            if problem is not None:
                log.warning("virtual number pool not usable", extra={"problem": problem})


def build(settings: Settings, *, engine: Engine | None = None, codec: FieldCodec | None = None,
          session_factory: sessionmaker[Session] | None = None) -> Services:
    """Wire the services; the schema and keys must exist already (see :func:`initialise`).

    A ``session_factory`` given (tests bind one to a connection) is also where long reads go.
    """
    routing = RoutingTable.load()
    stations = load_stations(settings, routing)  # first: a bad register fails the start before anything opens
    keys = keyfile.load(settings.key_file)
    # Printing reads no environment itself: it gets the validated settings here, once per process.
    printing.configure(printing.PrintConfig(settings.label_font, settings.zpl_text, settings.zpl_font))
    engine = engine or db.make_engine(settings.database_url)
    factory = session_factory or db.make_session_factory(engine)
    metrics = Metrics(settings.prometheus_multiproc_dir)
    # WAYBILL_ALERTS_ENABLED=0 (never in production): alert.* events are still audited, but no alert is stored,
    # delivered or suspends anyone.
    audit.install(factory, keys.secret("audit_chain"), observer=metrics.audit_appended,
                  alert_sink=alert_store.ingest if settings.alerts.enabled else None, shards=settings.audit_shards)
    # On SQLite the vault reads data keys through its own non-locking engine (the request's transaction may
    # already hold the write lock); long reads (audit verify) use it too, so they hold no write lock.
    key_engine = db.make_engine(settings.database_url, write_lock=False) if settings.is_sqlite else engine
    keystore = make_keystore(settings)
    master_keys = make_master_keys(settings, keys)
    vault = codec or Vault(key_engine, settings.key_file, settings.cipher,
                           blind_index_bits=settings.blind_index_bits, material=keys, keystore=keystore,
                           master_keys=master_keys, key_cache_ttl_s=settings.key_cache_ttl_s)
    # The bench's identity codec has no keyring of its own: the keys are still made (their cost is real).
    keyring = vault.subject_keys if isinstance(vault, Vault) else SubjectKeyring(keystore, settings.cipher, key_engine)
    # One store for every limit of this process (each limit has its own namespace in it): one Redis pool.
    limits = limit_storage(settings.redis_url)
    heavy: InFlightLimiter = ConcurrencyLimiter(settings.heavy_concurrency_per_merchant)
    if isinstance(limits, RedisStorage):
        heavy = RedisConcurrencyLimiter(limits.storage, settings.heavy_concurrency_per_merchant,
                                        lease_s=settings.heavy_lease_s)
    return Services(
        settings=settings, engine=engine, session_factory=factory, keys=keys, codec=vault, subject_keys=keyring,
        master_keys=master_keys, keystore=keystore,
        routing=routing, stations=stations,
        regions=RegionTable.load(settings.regions_extra_file), limit_storage=limits,
        merchant_limiter=WindowLimiter.per_rate(settings.merchant_rate_per_s, settings.merchant_burst,
                                                name="merchant", storage=limits),
        heavy_requests=heavy,
        # Built now, so a bad credentials file fails the start of a worker, not its first call.
        provider=make_provider(settings, vault, keys),
        messages=messages.make_provider(settings),
        privacy_notice=PrivacyNotice.load(settings.privacy_notice_file),
        metrics=metrics,
        readiness=Readiness(settings, keys, keystore=keystore, master_keys=master_keys),
        auth_failures=FailureThrottle(settings.auth_failure_rate_per_s, settings.auth_failure_burst, storage=limits),
        read_session_factory=session_factory or (db.make_session_factory(key_engine) if settings.is_sqlite
                                                 else factory),
    )
