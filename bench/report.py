"""Figures, targets, the stdout table and the JSON-lines record of a bench run.

A scenario returns ``Figure``s per run and server; ``Summary`` groups them by (variant, metric,
server) into min/median/max, puts the cote/Dovecot ratio beside the target, and decides the
verdict: any error makes the run FAILED (exit status 1). The table is pipe-delimited so that
people and the smoke tests read the same thing.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.histogram import Histogram
from bench.load import Stats


@dataclass
class Figure:
    """One measured number of one run against one server."""

    variant: str  # "10 clients", "TLS", "cold" …
    metric: str  # "sessions/s", "MB/conn", "SELECT s" …
    value: float
    higher_is_better: bool
    p50: float | None = None  # seconds
    p99: float | None = None
    errors: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)


def rate_figure(stats: Stats, variant: str, metric: str) -> Figure:
    """ops/s of a load run, with its latency percentiles and errors."""
    return Figure(variant, metric, stats.rate, True, stats.latency.percentile(0.5),
                  stats.latency.percentile(0.99), Counter(stats.errors), {"ops": stats.ops})


def cpu_figure(stats: Stats, variant: str, metric: str, cpu_seconds: float) -> Figure:
    """The server's CPU milliseconds per operation over a load run (warm-up included, so
    divided by every operation that completed). Unlike a rate it hardly moves when other
    work shares the machine: the figure to compare when the machine is not idle."""
    per_op = 1000 * cpu_seconds / stats.completed if stats.completed else 0.0
    return Figure(variant, metric, per_op, False, extra={"completed": stats.completed})


def time_figure(variant: str, metric: str, seconds: float, **extra: Any) -> Figure:
    return Figure(variant, metric, seconds, False, extra=dict(extra))


@dataclass(frozen=True)
class Target:
    """A figure's goal for cote; ``reference`` is Dovecot measured earlier on this machine."""

    metric: str
    reference: str
    goal: str
    min_ratio: float | None = None  # cote/dovecot must be ≥ this
    max_ratio: float | None = None  # cote/dovecot must be ≤ this
    max_value: float | None = None  # cote's value must be ≤ this
    variant: str | None = None  # only this variant (None: all)

    def applies(self, variant: str, metric: str) -> bool:
        return self.metric == metric and (self.variant is None or self.variant == variant)

    def met(self, cote: float | None, ratio: float | None) -> bool | None:
        if cote is None:
            return None
        if self.max_value is not None:
            return cote <= self.max_value
        if ratio is None:
            return None
        if self.min_ratio is not None:
            return ratio >= self.min_ratio
        if self.max_ratio is not None:
            return ratio <= self.max_ratio
        return None


TARGETS: dict[str, tuple[Target, ...]] = {
    "imap-mixed": (Target("sessions/s", "Dovecot ~97/s at 10 clients", "cote >= 1.0x",
                          min_ratio=1.0),),
    "login": (Target("logins/s", "Dovecot ~136/s plain", "cote >= 1.0x", min_ratio=1.0,
                     variant="plain"),),
    "pop3": (Target("sessions/s", "Dovecot ~66/s at 10 clients", "cote >= 1.0x", min_ratio=1.0),
             Target("RETR/s", "Dovecot ~1,330/s at 10 clients", "cote >= 1.0x", min_ratio=1.0),
             Target("MB/s", "Dovecot ~25 MB/s at 10 clients", "cote >= 1.0x", min_ratio=1.0)),
    "idle-memory": (Target("MB/conn", "Dovecot ~0.47 MB PSS", "cote <= 0.1 MB", max_value=0.1,
                           variant="plain"),
                    Target("MB/conn", "Dovecot ~1.9 MB PSS", "cote <= 0.1 MB", max_value=0.1,
                           variant="TLS")),
    "select-large": (Target("SELECT s", "Dovecot (this run)", "cote <= 2x Dovecot's time",
                            max_ratio=2.0),),
}


@dataclass
class Row:
    variant: str
    metric: str
    server: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    extra: list[dict[str, Any]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def median_run(self) -> int:
        order = sorted(range(len(self.values)), key=self.values.__getitem__)
        return order[(len(order) - 1) // 2]


class Summary:
    """All figures of one bench invocation, grouped for printing and recording."""

    def __init__(self, scenario: str, params: dict[str, Any]) -> None:
        self.scenario = scenario
        self.params = params
        self.rows: dict[tuple[str, str, str], Row] = {}
        self.unavailable: dict[str, str] = {}  # server -> reason
        self.failures: dict[str, list[str]] = {}  # server -> run-level failures
        self.versions: dict[str, str] = {}
        self.server_log: dict[str, list[str]] = {}  # server -> its log's last error lines
        self.started = time.time()

    def add(self, server: str, figure: Figure) -> None:
        key = (figure.variant, figure.metric, server)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row(figure.variant, figure.metric, server,
                                       figure.higher_is_better)
        row.values.append(figure.value)
        if figure.p50 is not None:
            row.p50.append(figure.p50)
        if figure.p99 is not None:
            row.p99.append(figure.p99)
        row.errors.update(figure.errors)
        row.extra.append(figure.extra)

    def fail(self, server: str, reason: str) -> None:
        self.failures.setdefault(server, []).append(reason)

    def compare_answers(self, key: str = "hits") -> None:
        """A cote answer that differs from Dovecot's (e.g. SEARCH hit counts) fails cote."""
        for variant, metric in self.keys():
            dovecot = self.rows.get((variant, metric, "dovecot"))
            cote = self.rows.get((variant, metric, "cote"))
            if not dovecot or not cote:
                continue
            expected = {e[key] for e in dovecot.extra if key in e}
            got = {e[key] for e in cote.extra if key in e}
            if expected and got and got != expected:
                self.fail("cote", f"{variant} {metric}: {key} {sorted(got)}, "
                                  f"Dovecot {sorted(expected)}")

    # -- verdict -------------------------------------------------------------------------
    def server_errors(self, server: str) -> int:
        return sum(sum(r.errors.values()) for r in self.rows.values() if r.server == server) + len(
            self.failures.get(server, []))

    def error_count(self) -> int:
        return sum(sum(r.errors.values()) for r in self.rows.values()) + sum(
            len(v) for v in self.failures.values())

    @property
    def ok(self) -> bool:
        measured = {r.server for r in self.rows.values()}
        return self.error_count() == 0 and bool(measured)

    def keys(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for variant, metric, _ in self.rows:
            seen.setdefault((variant, metric), None)
        return list(seen)

    def ratio(self, variant: str, metric: str) -> float | None:
        cote = self.rows.get((variant, metric, "cote"))
        dovecot = self.rows.get((variant, metric, "dovecot"))
        if not cote or not dovecot or not dovecot.median:
            return None
        return cote.median / dovecot.median

    def target(self, variant: str, metric: str) -> Target | None:
        for target in TARGETS.get(self.scenario, ()):
            if target.applies(variant, metric):
                return target
        return None

    # -- output --------------------------------------------------------------------------
    def table(self, servers: list[str]) -> str:
        out = [self._header()]
        widths = (16, 12, 8, 10, 10, 10, 9, 9, 6)
        head = ("variant", "metric", "server", "median", "min", "max", "p50 ms", "p99 ms",
                "errors")
        out.append(_line(head, widths))
        for variant, metric in self.keys():
            for server in servers:
                row = self.rows.get((variant, metric, server))
                if server in self.unavailable:
                    out.append(_line((variant, metric, server), widths[:3])
                               + f" {server}: not available ({self.unavailable[server]}) |")
                elif row is None:
                    out.append(_line((variant, metric, server), widths[:3]) + " no figure |")
                else:
                    run = row.median_run()
                    p50 = f"{row.p50[run] * 1000:.1f}" if len(row.p50) > run else "-"
                    p99 = f"{row.p99[run] * 1000:.1f}" if len(row.p99) > run else "-"
                    out.append(_line((variant, metric, server, _num(row.median),
                                      _num(min(row.values)), _num(max(row.values)), p50, p99,
                                      str(sum(row.errors.values()))), widths))
        out.append("")
        out.append(_line(("variant", "metric", "cote/dovecot", "target", "met"),
                         (16, 12, 12, 58, 4), left=2))
        for variant, metric in self.keys():
            ratio = self.ratio(variant, metric)
            target = self.target(variant, metric)
            cote_row = self.rows.get((variant, metric, "cote"))
            met = target.met(cote_row.median if cote_row else None, ratio) if target else None
            goal = f"{target.goal} ({target.reference})" if target else "-"
            out.append(_line((variant, metric, f"{ratio:.2f}x" if ratio is not None else "-",
                              goal.ljust(58), {True: "yes", False: "NO", None: "-"}[met]),
                             (16, 12, 12, 58, 4), left=2))
        errors = Counter[str]()
        for key, row in self.rows.items():
            for text, n in row.errors.items():
                errors[f"{key[2]} {key[0]}: {text}"] += n
        for server, reasons in self.failures.items():
            for reason in reasons:
                errors[f"{server}: {reason}"] += 1
        if errors:
            out.append("")
            out.append("errors:")
            out += [f"  {n} x {text}" for text, n in errors.most_common(12)]
        for server, lines in self.server_log.items():
            if lines:
                out.append(f"{server} log (last errors):")
                out += [f"  {line}" for line in lines]
        out.append("")
        out.append(self.verdict())
        return "\n".join(out)

    def _header(self) -> str:
        p = self.params
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        versions = "; ".join(f"{k} {v}" for k, v in self.versions.items() if v)
        phase = f" x {p['seconds']:g} s" if p.get("seconds") else ""
        return (f"== {self.scenario}: {p['runs']} run(s){phase}, "
                f"{os.cpu_count()} CPUs, load avg {load}"
                + (f", {versions}" if versions else "")
                + (f", imap/pop3 service_count = {p['service_count']} on both (the targets "
                   f"are for the stock 1)" if p.get("service_count") is not None else "")
                + (" [smoke]" if p.get("smoke") else ""))

    def verdict(self) -> str:
        parts = []
        measured = sorted({r.server for r in self.rows.values()})
        for server in measured:
            n = self.server_errors(server)
            parts.append(f"{server} {'ok' if n == 0 else f'{n} errors'}")
        for server in self.failures:
            if server not in measured:
                parts.append(f"{server} failed")
        for server in self.unavailable:
            parts.append(f"{server} not available")
        return f"RESULT: {'OK' if self.ok else 'FAILED'} ({', '.join(parts) or 'nothing measured'})"

    def record(self) -> dict[str, Any]:
        rows = []
        for (variant, metric, server), row in self.rows.items():
            rows.append({
                "variant": variant, "metric": metric, "server": server,
                "higher_is_better": row.higher_is_better, "values": row.values,
                "min": min(row.values), "median": row.median, "max": max(row.values),
                "p50_s": row.p50, "p99_s": row.p99, "errors": dict(row.errors),
                "extra": row.extra,
            })
        comparisons = []
        for variant, metric in self.keys():
            target = self.target(variant, metric)
            ratio = self.ratio(variant, metric)
            cote = self.rows.get((variant, metric, "cote"))
            comparisons.append({
                "variant": variant, "metric": metric, "ratio_cote_dovecot": ratio,
                "target": target.goal if target else None,
                "reference": target.reference if target else None,
                "met": target.met(cote.median if cote else None, ratio) if target else None,
            })
        return {
            "scenario": self.scenario, "time": self.started, "params": self.params,
            "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "versions": self.versions,
            "unavailable": self.unavailable, "failures": self.failures, "rows": rows,
            "server_log": self.server_log,
            "comparisons": comparisons, "result": "OK" if self.ok else "FAILED",
        }

    def append_json(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.scenario}.jsonl"
        with path.open("a") as f:
            f.write(json.dumps(self.record(), sort_keys=True) + "\n")
        return path


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _line(cells: tuple[str, ...], widths: tuple[int, ...], left: int = 3) -> str:
    """A table line: the first ``left`` cells left-aligned, the rest right-aligned."""
    return "| " + " | ".join(c.ljust(w) if i < left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"


def merge_histograms(histograms: list[Histogram]) -> Histogram:
    merged = Histogram()
    for h in histograms:
        merged.merge(h)
    return merged
