"""sd_notify: READY and watchdog pings on a real Unix datagram socket, withheld on a stall."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from lastwatt.watchdog import Watchdog, notify, watchdog_interval_s


def _listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(1.0)
    return sock, {"NOTIFY_SOCKET": str(path)}


def test_pings_only_while_control_cycles_complete(tmp_path):
    sock, env = _listener(tmp_path)
    now = [0.0]
    service = SimpleNamespace(last_cycle=None)
    dog = Watchdog(service, stall_s=30.0, period_s=10.0, environ=env, clock=lambda: now[0])
    assert notify("READY=1", env)
    assert sock.recv(100) == b"READY=1"
    for second in range(0, 120, 10):  # a cycle every 5 s: always healthy
        now[0] = float(second)
        service.last_cycle = object()
        assert dog.tick()
        assert sock.recv(100) == b"WATCHDOG=1"
    # The control loop stalls (no new cycle): pings stop after 30 s, and systemd is told why.
    sent = []
    for second in range(120, 200, 10):
        now[0] = float(second)
        sent.append(dog.tick())
    assert sent == [True, True, True, False, False, False, False, False]  # last cycle at 110 s
    messages = []
    sock.settimeout(0.2)
    try:
        while True:
            messages.append(sock.recv(100))
    except TimeoutError:
        pass
    assert messages.count(b"WATCHDOG=1") == 3
    assert messages[-1] == b"STATUS=control loop stalled"
    # Progress again: pings resume.
    service.last_cycle = object()
    assert dog.tick()
    sock.close()


def test_not_under_systemd_is_a_no_op():
    assert notify("READY=1", {}) is False
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
