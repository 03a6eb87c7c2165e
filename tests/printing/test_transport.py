"""Raw TCP printing against a loopback fake printer: delivery, retries, timeouts, reports."""

from __future__ import annotations

import time

import pytest

import printing
from printing.samples import sample_models
from printing.transport import PrintFailed, parse_printer_url, send_raw
from tests.printing.fake_printer import FakePrinter, free_port


@pytest.fixture
def printer():
    p = FakePrinter()
    yield p
    p.close()


def _wait(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.01)
    return pred()


def test_zpl_job_arrives_byte_for_byte(printer):
    models = list(sample_models(5))
    chunks = list(printing.iter_render(models, "zpl", "100x150"))
    report = send_raw(printer.url, iter(chunks))
    assert _wait(lambda: len(printer.jobs) == 1)
    assert printer.jobs[0] == b"".join(chunks)
    assert report.bytes_sent == len(printer.jobs[0]) and report.attempts == 1
    assert printer.jobs[0].count(b"^XZ") >= 5


def test_refused_connection_is_retried_then_reported():
    port = free_port()
    slept: list[float] = []
    with pytest.raises(PrintFailed) as exc:
        send_raw(f"tcp://127.0.0.1:{port}", [b"^XA^XZ"], retries=2, backoff=0.01, sleep=slept.append)
    assert exc.value.attempts == 3 and exc.value.sent == 0
    assert slept == [0.01, 0.02]  # exponential backoff between attempts
    assert "unreachable" in str(exc.value)


def test_printer_that_comes_up_late_gets_the_job():
    port = free_port()
    started: list[FakePrinter] = []

    def sleep_then_power_on(_seconds: float) -> None:
        # The first attempt was refused; the printer finishes booting during the backoff.
        if not started:
            started.append(FakePrinter(port=port))

    report = send_raw(f"tcp://127.0.0.1:{port}", [b"^XA^FDhello^FS^XZ"], retries=3, backoff=0.01,
                      sleep=sleep_then_power_on)
    try:
        assert report.attempts == 2
        assert _wait(lambda: b"^FDhello" in b"".join(started[0].jobs))
    finally:
        started[0].close()


def test_stalled_printer_times_out_and_is_reported():
    p = FakePrinter(stall=True)
    try:
        big = [b"x" * 65536] * 200  # more than socket buffers hold, so sendall must block
        with pytest.raises(PrintFailed) as exc:
            send_raw(p.url, big, timeout=0.3, retries=0)
        assert exc.value.sent < 65536 * 200
        assert "not resent" in str(exc.value)
    finally:
        p.close()


@pytest.mark.parametrize("url", ["http://printer:9100", "tcp://", "tcp://host:99999", "tcp://host/path", "host"])
def test_bad_printer_urls(url):
    with pytest.raises(ValueError):
        parse_printer_url(url)


def test_default_port():
    assert parse_printer_url("tcp://10.1.2.3") == ("10.1.2.3", 9100)
