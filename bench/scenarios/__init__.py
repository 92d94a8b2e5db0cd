"""The scenarios ``python -m bench`` knows, by name."""

from __future__ import annotations

from bench.scenarios.auth import Auth
from bench.scenarios.base import Options, Scenario
from bench.scenarios.fetch import FetchEnvelope
from bench.scenarios.imap_mixed import ImapMixed
from bench.scenarios.lmtp import LmtpBench
from bench.scenarios.login import Login
from bench.scenarios.managesieve import ManageSieveBench
from bench.scenarios.memory import IdleMemory
from bench.scenarios.pop3 import Pop3Bench
from bench.scenarios.search import Search
from bench.scenarios.select_large import SelectLarge
from bench.scenarios.startup import Startup
from bench.scenarios.storage import StorageBench

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (ImapMixed, Login, Auth, SelectLarge, Search, FetchEnvelope, Pop3Bench,
                LmtpBench, IdleMemory, Startup, StorageBench, ManageSieveBench)
}

__all__ = ["SCENARIOS", "Options", "Scenario"]
