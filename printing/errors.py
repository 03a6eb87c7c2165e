"""Exceptions raised by the label-rendering package.

None of these messages ever carries a field *value*: a refused label may hold unmasked personal data, and
exception messages end up in logs, HTTP error bodies and audit trails.
"""

from __future__ import annotations


class LabelError(Exception):
    """Base class of every error raised by :mod:`printing`."""


class UnmaskedField(LabelError):
    """A label model holds a personal field that is not masked to the floor; the label is refused.

    ``field_name`` is a dotted path such as ``recipient.phone``; the value itself is never kept.
    """

    def __init__(self, field_name: str) -> None:
        self.field_name = field_name
        super().__init__(f"refusing to render a label: field {field_name!r} is not masked to the floor")


class UnsupportedFormat(LabelError, ValueError):
    """The requested output format is not one of :data:`printing.FORMATS`."""

    def __init__(self, fmt: str, supported: tuple[str, ...]) -> None:
        self.fmt = fmt
        super().__init__(f"unsupported label format {fmt!r}; supported: {', '.join(supported)}")


class UnsupportedSize(LabelError, ValueError):
    """The requested label size is not one of :data:`printing.SIZES`."""

    def __init__(self, size: str, supported: tuple[str, ...]) -> None:
        self.size = size
        super().__init__(f"unsupported label size {size!r}; supported: {', '.join(supported)}")


class FontMissing(LabelError, RuntimeError):
    """No usable CJK TrueType font was found; raised at start-up instead of printing tofu boxes."""
