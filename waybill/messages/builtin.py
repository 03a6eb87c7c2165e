"""The built-in message provider: the embedded default, which sends nothing over any network.

"Delivering" a message keeps its encrypted text in ``sms_messages`` (the row is marked sent), so the table is
an encrypted outbox that development tooling reads back (`waybill messages show`, refused in production).
"""

from __future__ import annotations

from waybill.messages.base import Delivery, OutgoingMessage


class BuiltinMessageProvider:
    """:class:`~waybill.messages.base.MessageProvider` that keeps what it is given (encrypted, by the store)."""

    name = "builtin"

    def deliver(self, message: OutgoingMessage) -> Delivery:
        return Delivery(provider_ref=None, keep_text=True)
