"""Virtual (privacy) numbers: a courier calls the recipient through X, never seeing the real number.

The built-in provider (:mod:`.builtin`) is the embedded default; :mod:`.aliyun` adapts Alibaba Cloud Phone
Number Protection to the same interface (:mod:`.base`). Tables live in :mod:`.models` (migration 0004).
"""

from __future__ import annotations

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
    "pool_size",
]
