"""The masked snapshot of a party (what labels and every masked view show), stored encrypted.

The snapshot is masked, yet in plaintext it undid the blind index: ``138******78`` leaves 10^6 numbers, and
with the index secret one of them matches the stored index value. So it is sealed like any personal field,
under the row's data key (destroying that key destroys the snapshot too), bound to ``shipments.<role>_masked``
and the row id. Reading it costs one AES-GCM decryption per party.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from waybill.crypto.vault import FieldCodec

TABLE = "shipments"
KEYS = ("name", "phone", "address")
_KEYSET = frozenset(KEYS)


def column(role: str) -> str:
    """The associated-data column name of a party's snapshot (``sender_masked`` or ``recipient_masked``)."""
    if role not in ("sender", "recipient"):
        raise ValueError("role must be sender or recipient")
    return f"{role}_masked"


def encode(masked: Mapping[str, str]) -> str:
    """The snapshot's canonical JSON text (what is encrypted)."""
    if set(masked) != set(KEYS) or not all(isinstance(masked[k], str) for k in KEYS):
        raise ValueError("a masked snapshot has exactly name, phone and address, all text")
    return json.dumps({k: masked[k] for k in KEYS}, ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> dict[str, str]:
    """Parse a snapshot's JSON text (as :func:`encode` wrote it)."""
    doc = json.loads(text)
    # Checked cheaply: this runs twice per shipment of every listing.
    if type(doc) is not dict or doc.keys() != _KEYSET or not all(type(v) is str for v in doc.values()):
        raise ValueError("not a masked snapshot")
    return doc


def seal(codec: FieldCodec, row_id: str, role: str, masked: Mapping[str, str], *,
         subject_key: int | None = None) -> bytes:
    """Encrypt a party's masked snapshot for the shipment ``row_id`` (under the party's key when given)."""
    return codec.encrypt(encode(masked), table=TABLE, column=column(role), row_id=row_id, subject_key=subject_key)


def unseal(codec: FieldCodec, row_id: str, role: str, blob: bytes) -> dict[str, str]:
    """Decrypt a party's masked snapshot (a typed vault error if it was moved, altered or its key is gone)."""
    return decode(codec.decrypt(blob, table=TABLE, column=column(role), row_id=row_id))
