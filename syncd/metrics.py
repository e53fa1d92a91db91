"""Optional Prometheus metrics, served on the loopback only (prometheus-client).

Enabled by ``syncd run --metrics [HOST:]PORT``; without it prometheus-client is never
imported. Labels are the pair key (``user/pair``): a few per user, so cardinality stays small.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from syncd.errors import FatalError

log = logging.getLogger("syncd.metrics")


def parse_address(text: str) -> tuple[str, int]:
    """``"9187"`` or ``"127.0.0.1:9187"`` -> (host, port). Loopback only: the metrics name
    users and paths' counts, which are nobody else's business. :raises FatalError:"""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise FatalError(f"--metrics {text!r}: expected PORT or 127.0.0.1:PORT") from None
    if not loopback or not 0 < number < 65536:
        raise FatalError(f"--metrics {text!r}: metrics are served on a loopback address only")
    return host, number


class Metrics:
    """Counters and gauges the daemon updates; a no-op object when metrics are off."""

    def __init__(self, address: str | None) -> None:
        self.enabled = address is not None
        if address is None:
            return
        try:
            import prometheus_client as prom
        except ImportError:
            raise FatalError("--metrics needs prometheus-client (pip install prometheus-client)") from None
        host, port = parse_address(address)
        registry = prom.CollectorRegistry()
        self.runs = prom.Counter("syncd_runs_total", "Finished runs", ["pair", "outcome", "reason"], registry=registry)
        self.seconds = prom.Histogram(
            "syncd_run_seconds",
            "Run duration",
            ["pair"],
            registry=registry,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200),
        )
        self.bytes = prom.Counter("syncd_bytes_moved_total", "Bytes copied", ["pair"], registry=registry)
        self.actions = prom.Counter("syncd_actions_total", "Actions done", ["pair", "kind"], registry=registry)
        self.item_errors = prom.Gauge(
            "syncd_item_errors", "Items that failed in the last run", ["pair"], registry=registry
        )
        self.last_run = prom.Gauge(
            "syncd_last_run_timestamp_seconds", "End of the last run", ["pair"], registry=registry
        )
        self.paused = prom.Gauge("syncd_pair_paused", "1 when the pair is paused", ["pair"], registry=registry)
        self.events = prom.Counter(
            "syncd_watch_events_total", "File events that marked a pair dirty", ["pair"], registry=registry
        )
        try:
            self.server: Any = prom.start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise FatalError(f"--metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        log.info("metrics on http://%s:%d/metrics", host, port)

    def run_finished(self, result: dict[str, Any], reason: str) -> None:
        if not self.enabled:
            return
        pair = str(result.get("pair"))
        self.runs.labels(pair, str(result.get("outcome")), reason.split("+", maxsplit=1)[0]).inc()
        self.seconds.labels(pair).observe(float(result.get("seconds") or 0))
        self.bytes.labels(pair).inc(int(result.get("bytes") or 0))
        for kind, count in dict(result.get("done") or {}).items():
            self.actions.labels(pair, kind).inc(count)
        self.item_errors.labels(pair).set(len(result.get("errors") or []))
        self.last_run.labels(pair).set_to_current_time()

    def set_paused(self, pair: str, paused: bool) -> None:
        if self.enabled:
            self.paused.labels(pair).set(1 if paused else 0)

    def watch_event(self, pair: str) -> None:
        if self.enabled:
            self.events.labels(pair).inc()

    def close(self) -> None:
        if self.enabled:
            server, _thread = self.server
            server.shutdown()
