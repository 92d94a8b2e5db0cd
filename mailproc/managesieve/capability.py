"""The ManageSieve capability block, shared by managesieve-login and the mail process.

Its lines and their order are Pigeonhole's: IMPLEMENTATION, SIEVE, MAXREDIRECTS (after
login only), NOTIFY, SASL and STARTTLS (before login only), VERSION.
"""

from __future__ import annotations

from dataclasses import dataclass

from cote.config import Config
from cote.mailproc.managesieve import wire

DEFAULT_EXTENSIONS = (
    "fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric "
    "relational regex imap4flags copy include variables body enotify environment mailbox date "
    "index ihave duplicate mime foreverypart extracttext")


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


def sieve_extensions(cfg: Config) -> list[str]:
    """The extensions scripts may require: Pigeonhole's default set changed by the plugin
    setting ``sieve_extensions`` (a plain list replaces it, ``+ext``/``-ext`` edit it)."""
    exts = DEFAULT_EXTENSIONS.split()
    words = cfg.plugin().get("sieve_extensions", "").split()
    bare = [w for w in words if w[0] not in "+-"]
    if bare:
        exts = bare
    for word in words:
        name = word[1:]
        if word[0] == "+" and name not in exts:
            exts.append(name)
        elif word[0] == "-" and name in exts:
            exts.remove(name)
    return exts


def capabilities(cfg: Config, *, after_login: bool = False) -> Capabilities:
    """The block's values from the managesieve_* settings (looked up for protocol sieve);
    unless set, the SIEVE line lists the enabled extensions."""
    redirects: int | None = None
    if after_login:
        text = cfg.plugin().get("sieve_max_redirects", "4")
        redirects = int(text) if text.isdigit() else 4
    sieve = str(cfg.get("managesieve_sieve_capability")) \
        if cfg.setting("managesieve_sieve_capability") is not None \
        else " ".join(sieve_extensions(cfg))
    return Capabilities(str(cfg.get("managesieve_implementation_string")), sieve,
                        str(cfg.get("managesieve_notify_capability")), redirects)
