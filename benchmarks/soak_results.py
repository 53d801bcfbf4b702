"""The soak's bookkeeping: what the client saw, what the machine looked like, and the
results table. Pure data and arithmetic, so `tests/benchmarks` checks it without a server."""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
from pathlib import Path
from typing import Counter, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

RSS_GROWTH_LIMIT_MB = 50.0
RSS_WARMUP_S = 30.0  # a server's first samples hold imports and caches, not growth


@dataclasses.dataclass
class Ledger:
    """What the load generator sent and which answers the server confirmed."""

    answered: Set[str] = dataclasses.field(default_factory=set)  # event ids of 200 predictions
    rewarded: Set[str] = dataclasses.field(default_factory=set)  # event ids of 200 rewards
    outcomes: Counter[str] = dataclasses.field(default_factory=collections.Counter)
    latencies_s: List[float] = dataclasses.field(default_factory=list)
    sent: int = 0
    shed: int = 0  # due while --max-in-flight requests were waiting: not sent


@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at the machine: time into the run, load, the server, the spool, the emulator."""

    at_s: float
    load_avg: float
    server_pid: Optional[int]
    server_rss_mb: Optional[float]
    spool_mb: float
    wal_mb: float
    emulator_rss_mb: Optional[float]


@dataclasses.dataclass(frozen=True)
class RetrainOutcome:
    """One retraining DAG run: when, how long, its CPU time, and what ML Metadata says."""

    started_at_s: float
    seconds: float
    cpu_s: float
    ok: bool
    error: str
    anomalies: Tuple[str, ...]
    pushed: bool
    load_avg: float


@dataclasses.dataclass(frozen=True)
class Landed:
    """What BigQuery holds for the answered events, read after the drain."""

    predictions: Counter[str]  # event_id -> rows
    rewards: Counter[str]
    deduplicated_rows: int  # rows the retraining query reads (each side de-duplicated)
    joined_events: int  # distinct event ids with a prediction and a reward


@dataclasses.dataclass(frozen=True)
class Figure:
    """One row of the results table."""

    name: str
    value: str
    target: str
    ok: Optional[bool]  # None: reported, no target
    load_avg: str


def rss_growth_mb(samples: Sequence[Sample], warmup_s: float = RSS_WARMUP_S) -> Dict[int, float]:
    """Per server process: its largest RSS minus its first RSS after `warmup_s` of its life.

    A SIGKILLed server's successor starts from scratch, so growth is per process.
    """
    by_pid: Dict[int, List[Sample]] = collections.defaultdict(list)
    for sample in samples:
        if sample.server_pid is not None and sample.server_rss_mb is not None:
            by_pid[sample.server_pid].append(sample)
    growth = {}
    for pid, own in by_pid.items():
        settled = [s for s in own if s.at_s - own[0].at_s >= warmup_s] or own[-1:]
        growth[pid] = max(s.server_rss_mb for s in settled) - settled[0].server_rss_mb
    return growth


def delivery_figures(ledger: Ledger, landed: Landed, load: str) -> List[Figure]:
    """Missing and duplicate rows of the events the server confirmed."""
    missing_predictions = len(ledger.answered - landed.predictions.keys())
    missing_rewards = len(ledger.rewarded - landed.rewards.keys())
    in_table = _duplicate_rows(landed.predictions) + _duplicate_rows(landed.rewards)
    after_dedup = landed.deduplicated_rows - landed.joined_events
    unconfirmed = len(landed.predictions.keys() - ledger.answered)
    return [
        Figure("answered predictions", f"{len(ledger.answered):,}", "", None, load),
        Figure("accepted rewards", f"{len(ledger.rewarded):,}", "", None, load),
        Figure("answered predictions missing in BigQuery", str(missing_predictions), "0",
               missing_predictions == 0, load),
        Figure("accepted rewards missing in BigQuery", str(missing_rewards), "0",
               missing_rewards == 0, load),
        Figure("duplicates after read-time de-duplication", str(after_dedup), "0",
               after_dedup == 0, load),
        Figure("duplicate rows in the tables (before de-duplication)", str(in_table), "", None,
               load),
        Figure("logged predictions never confirmed to a client", str(unconfirmed), "", None,
               load),
    ]


def _duplicate_rows(rows_per_id: Counter[str]) -> int:
    return sum(rows_per_id.values()) - len(rows_per_id)


def resource_figures(samples: Sequence[Sample], spool_max_mb: float) -> List[Figure]:
    """Server RSS growth and spool size over the run."""
    growth = rss_growth_mb(samples)
    worst = max(growth.values(), default=float("nan"))
    peak = max(samples, key=lambda s: s.spool_mb + s.wal_mb)
    last = samples[-1]
    return [
        Figure(f"server RSS growth ({len(growth)} processes, worst)", f"{worst:.1f} MB",
               f"< {RSS_GROWTH_LIMIT_MB:.0f} MB", worst < RSS_GROWTH_LIMIT_MB,
               _load_range(samples)),
        Figure("spool size, peak (db + WAL)", f"{peak.spool_mb + peak.wal_mb:.1f} MB",
               f"<= {spool_max_mb:.0f} MB cap", peak.spool_mb + peak.wal_mb <= spool_max_mb,
               f"{peak.load_avg:.2f}"),
        Figure("spool WAL, peak", f"{max(s.wal_mb for s in samples):.1f} MB", "", None,
               _load_range(samples)),
        Figure("spool size at the end (db + WAL)", f"{last.spool_mb + last.wal_mb:.1f} MB", "",
               None, f"{last.load_avg:.2f}"),
        Figure("emulator RSS, peak / at the end", _emulator_rss(samples), "", None,
               _load_range(samples)),
    ]


def _emulator_rss(samples: Sequence[Sample]) -> str:
    """The emulator is a fixture, not the system under test; its memory is reported because a
    long run once grew it to 20 GB."""
    seen = [s.emulator_rss_mb for s in samples if s.emulator_rss_mb is not None]
    return f"{max(seen):,.0f} MB / {seen[-1]:,.0f} MB" if seen else "-"


def retrain_figures(outcomes: Sequence[RetrainOutcome]) -> List[Figure]:
    rows = []
    for i, r in enumerate(outcomes, 1):
        what = "ok" if r.ok else f"FAILED: {r.error}"
        pushed = ", pushed" if r.pushed else ", not pushed"
        rows.append(Figure(
            f"retrain {i} at {r.started_at_s / 60:.1f} min",
            f"{what}{pushed if r.ok else ''}; {r.seconds:.0f} s, {r.cpu_s:.0f} CPU s, "
            f"{len(r.anomalies)} anomalies",
            "succeeds", r.ok, f"{r.load_avg:.2f}",
        ))
    if not outcomes:
        rows.append(Figure("retrains", "none ran", ">= 1", False, "-"))
    return rows


def format_table(figures: Sequence[Figure]) -> str:
    header = ("figure", "value", "target", "met", "load avg (1 min)")
    cells = [header] + [
        (f.name, f.value, f.target, {True: "yes", False: "NO", None: ""}[f.ok], f.load_avg)
        for f in figures
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load_range(samples: Sequence[Sample]) -> str:
    loads = [s.load_avg for s in samples]
    return f"{min(loads):.2f}-{max(loads):.2f}"


def load_now() -> str:
    return f"{os.getloadavg()[0]:.2f}"



def load_figures(ledger: Ledger, samples: Sequence[Sample]) -> List[Figure]:
    """What the load generator sent and how the server answered."""
    load = _load_range(samples)
    latencies = sorted(ledger.latencies_s)
    outcomes = ", ".join(f"{k} {n:,}" for k, n in sorted(answer_classes(ledger.outcomes).items()))
    return [
        Figure("predictions sent / shed by the client", f"{ledger.sent:,} / {ledger.shed:,}",
               "", None, load),
        Figure("answers by outcome", outcomes, "", None, load),
        Figure("predict latency p50 / p99 (answered)",
               f"{_ms(latencies, 50)} / {_ms(latencies, 99)}", "", None, load),
    ]


def _ms(seconds: List[float], percentile: float) -> str:
    return f"{np.percentile(seconds, percentile) * 1000:.1f} ms" if seconds else "-"


def answer_classes(outcomes: Counter[str]) -> Counter[str]:
    """'predict 200' stays; 'predict ClientConnectorError' and other client errors, raised
    while the server is down or restarting, become 'predict no answer'."""
    classes: Counter[str] = collections.Counter()
    for outcome, count in outcomes.items():
        route, status = outcome.split(" ", 1)
        classes[f"{route} {status if status.isdigit() else 'no answer'}"] += count
    return classes


def write_samples(samples: Sequence[Sample], path: Path) -> None:
    """Every sample as CSV, to see when the RSS or the spool moved (e.g. during the outage)."""
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([field.name for field in dataclasses.fields(Sample)])
        writer.writerows(dataclasses.astuple(sample) for sample in samples)
