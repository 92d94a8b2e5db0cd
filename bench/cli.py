"""Command line of ``python -m bench``: set up the servers, run a scenario, print and record.

Both servers get the same generated store and users; each run measures every available server
in turn (the order alternates between runs so neither always goes first), then the table shows
min/median/max over runs, the cote/Dovecot ratio and the target, and one JSON line is appended
to bench/results/<scenario>.jsonl. Exit status: 0 when every measured figure is free of errors,
1 when anything failed (FAILED), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.authdb import BACKENDS
from bench.report import Summary
from bench.scenarios import SCENARIOS, Options
from bench.servers import SERVERS, Server, ServerUnavailable

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark cote and Dovecot side by side.",
        epilog="scenarios: " + "; ".join(f"{n}: {c.summary}" for n, c in SCENARIOS.items()))
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--only", choices=sorted(SERVERS), help="measure one server only")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured seconds per load phase (default 10)")
    parser.add_argument("--clients", type=int,
                        help="concurrent clients (default: the scenario's levels)")
    parser.add_argument("--connections", type=int,
                        help="idle-memory: idle connections (default 1000, smoke 20; "
                             "--clients means the same there)")
    parser.add_argument("--backend", choices=BACKENDS, default="passwd-file",
                        help="auth: the passdb answering the logins, a real server started "
                             "for the run (default passwd-file)")
    parser.add_argument("--runs", type=int, help="runs per server (default 3, smoke 1)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="unmeasured seconds before each load phase (default 1, smoke 0)")
    parser.add_argument("--workers", type=int, default=0,
                        help="load generator processes (default: one per CPU)")
    parser.add_argument("--seed", type=int, default=1, help="store and load seed (default 1)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny store, about a second of load: checks that everything works")
    parser.add_argument("--results-dir", type=Path, default=RESULTS,
                        help=f"where to append the JSON line (default {RESULTS})")
    parser.add_argument("--service-count", type=int, metavar="N",
                        help="service_count of the imap and pop3 mail services on both "
                             "servers: Dovecot's performance tuning suggests e.g. 100 to save "
                             "a fork per session (default: the stock 1, which the targets "
                             "are for)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the servers' directories (config, logs, mail) afterwards")
    args = parser.parse_args(argv)
    if args.service_count is not None and args.service_count < 0:
        parser.error("--service-count must be 0 (no limit) or more")
    for name in ("seconds", "clients", "connections", "runs", "workers"):
        value = getattr(args, name)
        if value is not None and (value < 0 or (name != "workers" and value == 0)):
            parser.error(f"--{name} must be positive")
    return args


def note(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runs = args.runs or (1 if args.smoke else 3)
    options = Options(seconds=args.seconds, clients=args.clients, runs=runs, smoke=args.smoke,
                      warmup=args.warmup, workers=args.workers, seed=args.seed,
                      connections=args.connections, backend=args.backend)
    scenario = SCENARIOS[args.scenario](options)
    order = [args.only] if args.only else ["dovecot", "cote"]
    summary = Summary(scenario.name, {
        "runs": runs, "seconds": scenario.seconds() if scenario.timed_load else None,
        "warmup": scenario.warmup(),
        "clients": args.clients, "connections": args.connections, "workers": args.workers,
        "backend": args.backend, "service_count": args.service_count,
        "seed": args.seed, "smoke": args.smoke, "servers": order})

    note(f"{scenario.name}: preparing the store and users")
    setup = scenario.setup()
    if args.service_count is not None:
        setup.extra_conf += "".join(
            f"\nservice {name} {{\n  service_count = {args.service_count}\n}}\n"
            for name in ("imap", "pop3"))
    servers: dict[str, Server] = {}
    try:
        for name in order:
            server = SERVERS[name](setup)
            summary.versions[name] = server.version()
            note(f"{name}: starting in {server.dir}")
            try:
                server.start(scenario.protocols)
            except ServerUnavailable as e:
                note(f"{name}: not available: {e}")
                summary.unavailable[name] = str(e)
                server.cleanup()
                continue
            servers[name] = server
        broken: set[str] = set()
        for run in range(runs):
            names = list(servers) if run % 2 == 0 else list(reversed(servers))
            for name in names:
                if name in broken:
                    continue
                note(f"{name}: run {run + 1}/{runs}")
                try:
                    figures = scenario.run(servers[name])
                except Exception as e:
                    summary.fail(name, f"run {run + 1}: {type(e).__name__}: {e}")
                    tail = servers[name].log_tail(5)
                    note(f"{name}: run {run + 1} failed: {e}" + (f"\n{tail}" if tail else ""))
                    broken.add(name)
                    continue
                for figure in figures:
                    summary.add(name, figure)
                    note(f"{name}: {figure.variant} {figure.metric} = {figure.value:.4g}"
                         + (f" ({sum(figure.errors.values())} errors)" if figure.errors else ""))
    finally:
        for name, server in servers.items():
            if summary.server_errors(name):
                summary.server_log[name] = server.log_problems()
        for server in servers.values():
            server.stop() if args.keep else server.cleanup()

    summary.compare_answers()
    print(summary.table(order))
    path = summary.append_json(args.results_dir)
    print(f"results appended to {path}")
    return 0 if summary.ok else 1
