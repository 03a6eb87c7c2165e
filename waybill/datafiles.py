"""The CSV data files the service ships (routing table, station register, divisions) and their overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def read_data_text(name: str, path: str | Path | None = None) -> str:
    """The text of ``path``, or of the packaged ``waybill/data/<name>`` when no path is given.

    ``utf-8-sig``: files saved by spreadsheet programs start with a byte-order mark.
    """
    if path is None:
        return (resources.files("waybill") / "data" / name).read_text(encoding="utf-8-sig")
    return Path(path).read_text(encoding="utf-8-sig")
