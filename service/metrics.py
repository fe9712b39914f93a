"""Prometheus metrics of one server process (``GET /metrics``).

Labels are bounded: statuses and rejection codes are the ledger's own fixed
sets, routes are the app's templates. No label ever holds a key, a secret or
anything a client sent.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10_000)
SECONDS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # A registry per app: two servers in one process (the tests) count apart.
        self.registry = CollectorRegistry()
        self.submissions = Counter("leadledger_submissions", "Submissions judged, by status and code",
                                   ("status", "code"), registry=self.registry)
        self.group_submissions = Histogram("leadledger_group_commit_submissions",
                                           "Submissions per group commit (one transaction)",
                                           buckets=GROUP_BUCKETS, registry=self.registry)
        self.group_requests = Histogram("leadledger_group_commit_requests", "Requests per group commit",
                                        buckets=GROUP_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram("leadledger_commit_seconds",
                                        "Time to judge and durably commit one group",
                                        buckets=SECONDS_BUCKETS, registry=self.registry)
        self.requests = Counter("leadledger_http_requests", "HTTP requests, by route and status",
                                ("route", "status"), registry=self.registry)
        self.writer_queue = Gauge("leadledger_writer_queue_requests", "Requests waiting for the writer",
                                  registry=self.registry)
        # Totals the writer process reports with each group (a gauge here: the count lives there).
        self.wallets_loaded_whole = Gauge(
            "leadledger_writer_wallets_loaded_whole",
            "Compacted wallets the writer read again whole from the log since it started (a submission"
            " reached before a wallet's horizon; many: raise LEADLEDGER_WALLET_HORIZON_DAYS)",
            registry=self.registry)
        self.wallets_compacted = Gauge("leadledger_writer_wallets_compacted",
                                       "Wallet compactions that dropped history since the writer started",
                                       registry=self.registry)

    def committed(self, results: list[Any], seconds: float, requests: int) -> None:
        for result in results:
            self.submissions.labels(result.status, result.code or "").inc()
        if requests:  # 0: the scheduled sweep, not a group of requests
            self.group_submissions.observe(len(results))
            self.group_requests.observe(requests)
            self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
