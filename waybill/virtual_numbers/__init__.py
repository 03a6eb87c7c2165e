"""Virtual (privacy) numbers: a courier calls the recipient through X, never seeing the real number.

The built-in provider (:mod:`.builtin`) is the embedded default; :mod:`.aliyun` adapts Alibaba Cloud Phone
Number Protection to the same interface (:mod:`.base`). Tables live in :mod:`.models` (migration 0004).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from waybill.virtual_numbers.base import (
    BindConflict,
    Binding,
    CallReceipt,
    CallRoute,
    NoAvailableNumber,
    OutOfSession,
    ProviderError,
    VirtualNumberError,
    VirtualNumberProvider,
)
from waybill.virtual_numbers.builtin import BuiltinProvider, add_numbers, pool_size
from waybill.virtual_numbers.store import derive_endpoint_key

if TYPE_CHECKING:
    from waybill.crypto.vault import FieldCodec
    from waybill.keyfile import KeyMaterial
    from waybill.settings import Settings


def make_provider(settings: Settings, codec: FieldCodec, keys: KeyMaterial) -> VirtualNumberProvider:
    """The provider the settings choose, wired to the codec and the key file's endpoint key."""
    if settings.phone_provider == "aliyun":
        from waybill.virtual_numbers.aliyun import AliyunProvider, load_credentials

        assert settings.aliyun_credentials_file is not None  # load_settings requires it for aliyun
        creds = load_credentials(settings.aliyun_credentials_file)
        return AliyunProvider(codec, derive_endpoint_key(keys), access_key_id=creds.access_key_id,
                              access_key_secret=creds.access_key_secret, pool_key=creds.pool_key,
                              endpoint=settings.aliyun_endpoint, receipt_token=creds.receipt_token)
    return BuiltinProvider(codec, derive_endpoint_key(keys))

__all__ = [
    "BindConflict",
    "Binding",
    "BuiltinProvider",
    "CallReceipt",
    "CallRoute",
    "NoAvailableNumber",
    "OutOfSession",
    "ProviderError",
    "VirtualNumberError",
    "VirtualNumberProvider",
    "add_numbers",
    "derive_endpoint_key",
    "make_provider",
    "pool_size",
]
