"""Messages to people (SMS): one provider interface for subject codes, pickup codes and incident notices.

The built-in provider (:mod:`.builtin`) is the embedded default and keeps what it sends in an encrypted
outbox; :mod:`.aliyun` adapts Alibaba Cloud SMS ``SendSms`` to the same interface (:mod:`.base`). Texts come
from the named templates of :mod:`.templates`; rows live in :mod:`.models` (migration 0017).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from waybill.messages.base import (
    Delivery,
    InvalidPhone,
    MessageError,
    MessageProvider,
    NotMobile,
    OutgoingMessage,
    ProviderError,
    Throttled,
)
from waybill.messages.builtin import BuiltinMessageProvider
from waybill.messages.store import (
    EXPIRE_TOPIC,
    SUPPRESSED_TOPIC,
    TOPIC,
    deliver,
    expire,
    expire_handler,
    forget,
    handler,
    phone_hash,
    send,
    sent_to,
    suppressed_handler,
)
from waybill.messages.templates import TEMPLATES, TemplateError

if TYPE_CHECKING:
    from waybill.settings import Settings


def make_provider(settings: Settings) -> MessageProvider:
    """The provider the settings choose, checked now (at start-up): a template code map that does not name exactly
    the templates raises ``SettingsError``, a bad credentials file ``CredentialsError``."""
    from waybill.settings import SettingsError

    codes = dict(settings.sms_template_codes)
    unknown, missing = sorted(set(codes) - set(TEMPLATES)), sorted(set(TEMPLATES) - set(codes))
    if unknown:
        raise SettingsError(f"WAYBILL_SMS_TEMPLATE_CODES names unknown templates: {', '.join(unknown)}")
    if settings.sms_provider == "aliyun":
        if missing:
            raise SettingsError(f"WAYBILL_SMS_TEMPLATE_CODES has no code for: {', '.join(missing)}")
        from waybill.messages.aliyun import AliyunMessageProvider, load_credentials

        assert settings.sms_credentials_file is not None and settings.sms_sign_name is not None  # load_settings
        creds = load_credentials(settings.sms_credentials_file)
        return AliyunMessageProvider(access_key_id=creds.access_key_id, access_key_secret=creds.access_key_secret,
                                     sign_name=settings.sms_sign_name, template_codes=codes,
                                     endpoint=settings.sms_endpoint)
    return BuiltinMessageProvider()


__all__ = [
    "EXPIRE_TOPIC",
    "SUPPRESSED_TOPIC",
    "TEMPLATES",
    "TOPIC",
    "BuiltinMessageProvider",
    "Delivery",
    "InvalidPhone",
    "MessageError",
    "MessageProvider",
    "NotMobile",
    "OutgoingMessage",
    "ProviderError",
    "TemplateError",
    "Throttled",
    "deliver",
    "expire",
    "expire_handler",
    "forget",
    "handler",
    "make_provider",
    "phone_hash",
    "send",
    "sent_to",
    "suppressed_handler",
]
