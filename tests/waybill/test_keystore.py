"""The local period-key store: a key destroyed by another process is not handed out from a stale cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from waybill.crypto.keystore import KeyDestroyed, LocalKeyStore


def test_ensure_does_not_trust_a_stale_cache(tmp_path: Path) -> None:
    path = tmp_path / "period-keys.json"
    writer, retention = LocalKeyStore(path), LocalKeyStore(path)
    key = writer.ensure("ed-20261101-g1")
    assert retention.destroy(["ed-20261101-g1"]) == ["ed-20261101-g1"]
    writer._loaded_at -= 3600  # the writer's cache is older than its refresh interval
    fresh = writer.ensure("ed-20261101-g1")
    # Made again (a new key), never the destroyed one that no copy of the store holds any more.
    assert fresh != key
    assert LocalKeyStore(path).get("ed-20261101-g1") == fresh


def test_get_after_destruction_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "period-keys.json"
    reader, retention = LocalKeyStore(path), LocalKeyStore(path)
    reader.ensure("ap-20261101")
    retention.destroy(["ap-20261101"])
    reader._loaded_at -= 3600
    with pytest.raises(KeyDestroyed):
        reader.get("ap-20261101")
