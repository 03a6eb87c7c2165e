"""Webhook tests: a real HTTP receiver on loopback, real commits, the real task runner."""
