"""Courier side: staff authentication, dispatch, scan, virtual-number calls, delivery (not yet built)."""
