"""Prometheus metrics for a service: one registry per server instance, served on loopback.

Each service owns a ``Metrics`` (so several in one test process do not collide)
and updates gauges that need the database from its own async task, because
Prometheus collectors are synchronous and must never touch the database.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    """Counters and gauges of one broker or node."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.port = 0
        self._server: Any = None
        ns = f"olievlek_{service}"
        self.sends = Counter(f"{ns}_sends", "Envelopes decided, by outcome.", ["decision"], registry=self.registry)
        self.deliveries = Counter(f"{ns}_deliveries", "Envelopes delivered on streams.", registry=self.registry)
        self.acks = Counter(f"{ns}_acks", "Acknowledgements, by outcome.", ["outcome"], registry=self.registry)
        self.queue_depth = Gauge(f"{ns}_queue_depth", "Undelivered envelopes per recipient.", ["recipient"],
                                 registry=self.registry)
        self.oldest_age = Gauge(f"{ns}_oldest_undelivered_seconds", "Age of the oldest undelivered envelope.",
                                ["recipient"], registry=self.registry)
        self.redeliveries = Counter(f"{ns}_redeliveries", "Deliveries of an item delivered before.",
                                    registry=self.registry)
        self.expiries = Counter(f"{ns}_expiries", "Deliveries expired (not acknowledged within the rule's TTL).",
                                registry=self.registry)
        self.duplicates = Counter(f"{ns}_duplicates", "Deliveries already stored (acknowledged, not applied).",
                                  registry=self.registry)
        self.outbox_oldest = Gauge(f"{ns}_outbox_oldest_seconds", "Age of the oldest outbox entry without an answer.",
                                   registry=self.registry)
        self.refused_calls = Counter(f"{ns}_refused_calls", "Calls ended by a status (authentication, "
                                     "authorisation, arguments, rate limits), by RPC and refusal code.",
                                     ["rpc", "code"], registry=self.registry)
        self.outbox_pending = Gauge(f"{ns}_outbox_pending", "Outbox entries without a broker answer.",
                                    registry=self.registry)
        # A node's evidence that its broker lied: any increase is for its administrator to look into.
        self.audit_alarms = Counter(f"{ns}_audit_alarms", "Broker answers or deliveries the audit log does not "
                                    "back (a refused proof, a reused leaf, an unproven delivery), by reason.",
                                    ["reason"], registry=self.registry)
        self.delivery_repeats = Counter(f"{ns}_delivery_repeats", "Deliveries at or below the sequence number "
                                        "already acknowledged (deduplicated).", registry=self.registry)
        self.audit_forks = Counter(f"{ns}_audit_forks", "Witnessed heads that show the broker gave this node a "
                                   "private branch (the fork alarm).", registry=self.registry)
        self.witness_age = Gauge(f"{ns}_witness_age_seconds", "Age of the latest quorum-cosigned head, by the "
                                 "witnesses' own timestamps.", registry=self.registry)
        self.witness_lagging = Gauge(f"{ns}_witness_lagging", "1 while no quorum-cosigned head is younger than the "
                                     "lag bound (a warning, not an alarm).", registry=self.registry)
        self.unconfirmed = Counter(f"{ns}_unconfirmed", "Outcomes no quorum-cosigned head covered within the bound "
                                   "(shown as unconfirmed).", registry=self.registry)
        self.delivery_gaps = Counter(f"{ns}_delivery_gaps", "Sequence numbers skipped on the delivery stream, by "
                                     "whether a proven expiry explained them.", ["explained"], registry=self.registry)
        self.streams_owned = Gauge(f"{ns}_streams_owned", "Delivery streams this broker instance serves (several "
                                   "instances over one database).", registry=self.registry)
        self.database_up = Gauge(f"{ns}_database_up", "1 while the last probe of the database answered.",
                                 registry=self.registry)
        self.database_primary = Gauge(f"{ns}_database_primary", "1 while the database answers as a read-write "
                                      "primary.", registry=self.registry)
        self.database_failovers = Counter(f"{ns}_database_failovers", "Changes of the database server answering "
                                          "(a failover or switchover).", registry=self.registry)
        self.replication_lag = Gauge(f"{ns}_replication_lag_seconds", "The standbys' replay lag as the primary "
                                     "reports it (needs a monitoring role).", registry=self.registry)
        self.commit_retries = Counter(f"{ns}_commit_retries", "Batches run again after the database connection "
                                      "was lost before COMMIT.", registry=self.registry)
        self.streams_taken_over = Counter(f"{ns}_streams_taken_over", "Streams of this instance that another "
                                          "instance claimed since (their node moved).", registry=self.registry)

    def serve(self, listen: str) -> int:
        """Serve /metrics on ``host:port`` (port 0 picks one); returns the bound port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        self._server = server
        self.port = int(server.server_port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
