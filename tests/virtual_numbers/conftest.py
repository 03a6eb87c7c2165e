"""Fixtures for the virtual-number tests: a controllable clock and providers on the test services."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from waybill.models import utcnow
from waybill.virtual_numbers import BuiltinProvider

# Parties (personal numbers: must never be stored or printed in plaintext) and X numbers (the provider's).
A, B, C = "13811112222", "13933334444", "13755556666"
LANDLINE = "021-64321234"
X1, X2, X3 = "17000000001", "17000000002", "17000000003"
HOUR = timedelta(hours=1)


class Clock:
    """A clock tests can move forward; starts at the real time so stored rows look ordinary."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(services, clock) -> BuiltinProvider:
    return BuiltinProvider.from_services(services, clock=clock)
