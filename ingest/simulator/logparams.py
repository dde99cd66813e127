"""Random parameters of log lines: a tiny deterministic generator and realistic value pools."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

MASK64 = (1 << 64) - 1


class Draw:
    """A tiny splitmix64 stream: fast to seed, identical on every platform."""

    __slots__ = ("state",)

    def __init__(self, seed: int):
        self.state = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def int(self, lo: int, hi: int) -> int:
        return lo + self.next() % (hi - lo + 1)

    def float(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * (self.next() >> 11) / float(1 << 53)

    def log(self, lo: float, hi: float) -> float:
        return float(np.exp(self.float(np.log(lo), np.log(hi))))

    def pick(self, items: Sequence[str]) -> str:
        return items[self.next() % len(items)]


USERS = (
    "alice",
    "bob",
    "carol",
    "deploy",
    "svc-app",
    "jenkins",
    "ops",
    "dave",
    "erin",
    "mallory",
    "ansible",
    "grafana",
)
GUESSES = (
    "admin",
    "test",
    "oracle",
    "ubuntu",
    "pi",
    "guest",
    "ftpuser",
    "postgres",
    "user",
    "support",
    "git",
    "hadoop",
    "mysql",
    "www",
)
DBS = ("orders", "accounts", "inventory", "billing", "catalog")
TABLES = (
    "orders",
    "order_items",
    "customers",
    "payments",
    "invoices",
    "sessions",
    "products",
    "events",
    "shipments",
    "audit_log",
)
WORDS = (
    "shoes",
    "laptop",
    "garden",
    "coffee",
    "winter",
    "camera",
    "books",
    "phone",
    "kitchen",
    "bike",
    "music",
    "travel",
)
RESOURCES = ("users", "orders", "cart", "products", "search", "checkout", "profile", "reviews")
HOSTS = (
    "payments",
    "auth",
    "inventory",
    "pricing",
    "recommendations",
    "users",
    "notifications",
    "geo",
)
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
    "okhttp/4.12.0",
    "curl/8.5.0",
    "Go-http-client/2.0",
    "Mozilla/5.0 (X11; Linux x86_64)",
)
FILES = (
    "app.js",
    "main.css",
    "logo.svg",
    "vendor.js",
    "index.html",
    "fonts/inter.woff2",
    "syslog",
    "nginx/access",
    "app/app",
    "auth",
)
EXTS = ("jpg", "json", "parquet", "mp4")
BUCKETS = ("prod-backups", "media-assets", "data-lake", "ml-datasets", "logs-archive")
TOPICS = ("orders", "payments", "clickstream", "inventory-updates", "emails", "audit")
GROUPS = ("billing-consumer", "search-indexer", "fraud-detector", "email-sender")
KEYS = ("timeout", "pool_size", "retry_backoff", "read_deadline", "cache_ttl", "max_conns")
KEY_CMDS = (
    "KEYS session:*",
    "HGETALL cart:{id}",
    "ZRANGEBYSCORE leaderboard 0 +inf",
    "SMEMBERS tags",
    "LRANGE queue 0 -1",
)
UNITS = (
    "apt-daily.service",
    "fstrim.service",
    "man-db.service",
    "sysstat-collect.service",
    "motd-news.service",
    "logrotate.service",
)
COLLECTORS = ("cpu", "diskstats", "filesystem", "meminfo", "netdev", "loadavg", "pressure")
PROCS = (
    "java",
    "python3",
    "node",
    "postgres",
    "redis-server",
    "nginx",
    "kafka",
    "ffmpeg",
    "minio",
    "spark-executor",
)
SERVICES_ANY = (
    "storefront",
    "checkout-api",
    "orders-db",
    "session-cache",
    "product-search",
    "blob-store",
)


def _ms(d: Draw) -> str:
    return str(int(d.log(2, 900)))


PARAM_KINDS: dict[str, Callable[[Draw], str]] = {
    "ip": lambda d: f"{d.int(11, 223)}.{d.int(0, 255)}.{d.int(0, 255)}.{d.int(1, 254)}",
    "ip_int": lambda d: f"10.{d.int(0, 63)}.{d.int(0, 255)}.{d.int(2, 254)}",
    "ip_flood": lambda d: f"203.0.113.{d.int(1, 12)}",
    "port": lambda d: str(d.int(1024, 65535)),
    "int": lambda d: str(int(d.log(1, 250_000))),
    "small": lambda d: str(d.int(1, 64)),
    "sec": lambda d: f"{d.log(0.2, 900):.3f}",
    "sec_small": lambda d: f"{d.log(0.001, 0.4):.3f}",
    "sec2": lambda d: f"{d.int(0, 59):02d}",
    "min2": lambda d: f"{d.int(0, 59):02d}",
    "ms": _ms,
    "ms_slow": lambda d: str(int(d.log(800, 30_000))),
    "ms2": lambda d: f"{d.int(0, 99):02d}",
    "ms3": lambda d: f"{d.int(0, 999):03d}",
    "bytes": lambda d: str(int(d.log(200, 5e6))),
    "bytes_big": lambda d: str(int(d.log(5e7, 8e11))),
    "user": lambda d: d.pick(USERS),
    "user_guess": lambda d: d.pick(GUESSES),
    "db": lambda d: d.pick(DBS),
    "table": lambda d: d.pick(TABLES),
    "float": lambda d: f"{d.float(0, 1):.4f}",
    "pct": lambda d: str(d.int(1, 100)),
    "lr": lambda d: f"{d.log(1e-5, 1e-3):.2e}",
    "hex8": lambda d: f"{d.next() & 0xFFFFFFFF:08x}",
    "hex16": lambda d: f"{d.next():016x}",
    "uuid": lambda d: _uuid(d),
    "b64": lambda d: "".join(
        d.pick("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        for _ in range(43)
    ),
    "key": lambda d: d.pick(KEYS),
    "key_cmd": lambda d: d.pick(KEY_CMDS).replace("{id}", str(d.int(1, 99999))),
    "url": lambda d: f"/api/v1/{d.pick(RESOURCES)}/{d.int(1, 999999)}",
    "method": lambda d: d.pick(("GET", "GET", "GET", "POST", "POST", "PUT", "DELETE")),
    "status": lambda d: d.pick(("200",) * 12 + ("201", "204", "301", "400", "404", "500")),
    "agent": lambda d: d.pick(AGENTS),
    "host": lambda d: d.pick(HOSTS),
    "file": lambda d: d.pick(FILES),
    "word": lambda d: d.pick(WORDS),
    "index": lambda d: f"{d.pick(('products', 'docs', 'reviews'))}-2025.{d.int(1, 12):02d}",
    "node_es": lambda d: f"es-data-{d.int(1, 12)}",
    "bucket": lambda d: d.pick(BUCKETS),
    "objkey": lambda d: f"{d.pick(WORDS)}/{d.next() & 0xFFFFFF:06x}/{d.pick(WORDS)}.{d.pick(EXTS)}",
    "topic": lambda d: d.pick(TOPICS),
    "group": lambda d: d.pick(GROUPS),
    "pid": lambda d: str(d.int(300, 65000)),
    "service_any": lambda d: d.pick(SERVICES_ANY),
    "version_any": lambda d: f"v{d.int(1, 5)}.{d.int(0, 30)}.{d.int(0, 9)}",
    "unit": lambda d: d.pick(UNITS),
    "collector": lambda d: d.pick(COLLECTORS),
    "dev": lambda d: d.pick(("sda", "sdb", "nvme0n1", "nvme1n1")),
    "nic": lambda d: d.pick(("eno1", "ens2f0", "enp94s0f1")),
    "proc_any": lambda d: d.pick(PROCS),
}
# Filled from the line's context rather than drawn.
CONTEXT_KINDS = frozenset(
    {
        "vm",
        "vm_any",
        "node",
        "service",
        "value",
        "date",
        "iso",
        "iso_past",
        "epoch",
        "hhmm",
        "ts_job",
        "job",
        "job_name",
        "version",
        "version_prev",
        "ticket",
        "campaign",
        "flag",
        "batch",
        "kernel",
    }
)


def _uuid(d: Draw) -> str:
    h = f"{d.next():016x}{d.next():016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def param_kind(name: str) -> str:
    if name in PARAM_KINDS or name in CONTEXT_KINDS:
        return name
    base = re.sub(r"_\d+$", "", name)
    if base in PARAM_KINDS or base in CONTEXT_KINDS:
        return base
    raise KeyError(f"unknown log placeholder {{{name}}}")
