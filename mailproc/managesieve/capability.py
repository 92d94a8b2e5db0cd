"""The ManageSieve capability block, shared by managesieve-login and the mail process.

Its lines and their order are Pigeonhole's: IMPLEMENTATION, SIEVE, MAXREDIRECTS (after
login only), NOTIFY, SASL and STARTTLS (before login only), VERSION.
"""

from __future__ import annotations

from dataclasses import dataclass

from cote.config import Config
from cote.mailproc.managesieve import wire


@dataclass(frozen=True, slots=True)
class Capabilities:
    implementation: str
    sieve: str
    notify: str
    maxredirects: int | None = None  # only after login

    def lines(self, sasl: list[str] | None, starttls: bool) -> list[bytes]:
        out = [b'"IMPLEMENTATION" ' + wire.string(self.implementation),
               b'"SIEVE" ' + wire.string(self.sieve)]
        if self.maxredirects is not None:
            out.append(b'"MAXREDIRECTS" ' + wire.string(str(self.maxredirects)))
        if self.notify:
            out.append(b'"NOTIFY" ' + wire.string(self.notify))
        if sasl is not None:
            out.append(b'"SASL" ' + wire.string(" ".join(sasl)))
        if starttls:
            out.append(b'"STARTTLS"')
        out.append(b'"VERSION" "1.0"')
        return [line + b"\r\n" for line in out]


def capabilities(cfg: Config, *, after_login: bool = False) -> Capabilities:
    """The block's values from the managesieve_* settings (looked up for protocol sieve)."""
    redirects: int | None = None
    if after_login:
        text = cfg.plugin().get("sieve_max_redirects", "4")
        redirects = int(text) if text.isdigit() else 4
    return Capabilities(str(cfg.get("managesieve_implementation_string")),
                        str(cfg.get("managesieve_sieve_capability")),
                        str(cfg.get("managesieve_notify_capability")), redirects)
