"""Canaries: shipments that look like any other, planted so that an insider who opens one gives themselves away
(:mod:`.plant` makes them, :mod:`.watch` raises the ``canary`` alert, :mod:`.models` says which they are)."""
