"""Which settings and sections exist where, with their types and Dovecot defaults.

Built once at import from the observed Dovecot 2.3.19 table in ``settings_table``: every
section kind maps setting names to a ``Spec`` (type, default text, enum values).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cote.config import settings_table as T
from cote.config.values import Value, parse


@dataclass(frozen=True, slots=True)
class Spec:
    kind: str                      # str bool uint size time time_msecs octal port enum
    default: str                   # doveconf's printed default
    enum: tuple[str, ...] = ()

    def parse(self, text: str) -> Value:
        return parse(self.kind, text, self.enum)


def _table(raw: dict[str, tuple[str, str]], prefix: str) -> dict[str, Spec]:
    out: dict[str, Spec] = {}
    for key, (kind, default) in raw.items():
        enum = T.ENUMS.get(prefix + key, ()) if kind == "enum" else ()
        if kind == "enum" and not enum:
            raise AssertionError(f"enum values missing for {prefix}{key}")
        out[key] = Spec(kind, default, enum)
    return out


GLOBAL: dict[str, Spec] = _table(T.GLOBAL, "")
# Settings doveconf knows but leaves out of -a unless set; NULL_DEFAULT ones have no default
# at all (-h prints nothing for them until they are set).
HIDDEN = frozenset(T.HIDDEN_GLOBAL)
NULL_DEFAULT = frozenset(k for k, (_, d) in T.HIDDEN_GLOBAL.items() if d is None)
GLOBAL.update(_table({k: (kind, d or "") for k, (kind, d) in T.HIDDEN_GLOBAL.items()}, ""))
# Names doveconf silently takes for another setting.
ALIASES = {"doveadm_proxy_port": "doveadm_port"}
SERVICE = _table(T.SERVICE, "service/")
INET_LISTENER = _table(T.INET_LISTENER, "inet_listener/")
UNIX_LISTENER = _table(T.UNIX_LISTENER, "unix_listener/")
NAMESPACE = _table(T.NAMESPACE, "namespace/")
MAILBOX = _table(T.MAILBOX, "namespace/mailbox/")
PASSDB = _table(T.PASSDB, "passdb/")
USERDB = _table(T.USERDB, "userdb/")
METRIC = {k: Spec("str", v) for k, v in (
    ("description", ""), ("exporter", ""),
    ("exporter_include", "name hostname timestamps categories fields"),
    ("fields", ""), ("filter", ""), ("group_by", ""))}
EVENT_EXPORTER = {
    "format": Spec("str", ""), "format_args": Spec("str", ""), "transport": Spec("str", ""),
    "transport_args": Spec("str", ""), "transport_timeout": Spec("time_msecs", "250 ms"),
}

# Generic defaults of a service or listener that Dovecot does not define itself.
SERVICE_DEFAULTS = {
    "chroot": "", "client_limit": "0", "drop_priv_before_exec": "no", "executable": "",
    "extra_groups": "", "group": "", "idle_kill": "0", "privileged_group": "",
    "process_limit": "0", "process_min_avail": "0", "protocol": "", "service_count": "0",
    "type": "", "user": "", "vsz_limit": "18446744073709551615 B",
}
INET_DEFAULTS = {"address": "", "haproxy": "no", "port": "0", "reuse_port": "no", "ssl": "no"}
UNIX_DEFAULTS = {"group": "", "mode": "0600", "user": ""}

# Section kinds with a typed table; plugin and dict are free-form key = value lists.
TABLES: dict[str, dict[str, Spec]] = {
    "service": SERVICE, "inet_listener": INET_LISTENER, "unix_listener": UNIX_LISTENER,
    "fifo_listener": UNIX_LISTENER, "namespace": NAMESPACE, "mailbox": MAILBOX,
    "passdb": PASSDB, "userdb": USERDB, "metric": METRIC, "event_exporter": EVENT_EXPORTER,
}
FREE_FORM = frozenset({"plugin", "dict"})
FILTERS = frozenset({"protocol", "local", "remote", "local_name"})
CHILDREN: dict[str, frozenset[str]] = {
    "": frozenset({"service", "namespace", "passdb", "userdb", "plugin", "dict", "metric",
                   "event_exporter"}),
    "service": frozenset({"inet_listener", "unix_listener", "fifo_listener"}),
    "namespace": frozenset({"mailbox"}),
}
# Lists whose entries keep file order (the order is meaningful); the others print sorted.
ORDERED_KINDS = frozenset({"passdb", "userdb"})
# Keys doveconf -n always prints for a section kind, even at their default.
ALWAYS_PRINTED: dict[str, tuple[str, ...]] = {"namespace": ("location", "prefix")}


# Where cote's built-in service defaults knowingly differ from Dovecot 2.3's (docs/differences.md,
# "Processes"): the login services run in Dovecot's "high-performance" mode, one process per CPU
# serving many clients, as DESIGN.md §1 plans. A Python process forked per connection costs
# ~10 ms of CPU (copy-on-write faults); `service_count = 1` in the config gives Dovecot's
# high-security mode back.
HIGH_PERFORMANCE_LOGIN = ("imap-login", "pop3-login", "managesieve-login")
# The imap and pop3 mail processes serve up to this many sessions one after the other, each
# as its user, as Dovecot's performance tuning suggests (`service_count = 100`); a process
# only ever serves users of the uid and gid it first became. Forking costs a Python process
# ~10 ms of CPU per session, Dovecot's C processes ~2; `service_count = 1` gives Dovecot's
# default back.
REUSED_MAIL_PROCESSES = ("imap", "pop3")
MAIL_SERVICE_COUNT = "100"


def cote_service_defaults() -> dict[str, dict[str, str]]:
    """The service settings whose built-in default is cote's own, by service."""
    cpus = str(os.cpu_count() or 1)
    ours = {name: {"service_count": "0", "process_min_avail": cpus}
            for name in HIGH_PERFORMANCE_LOGIN}
    ours.update({name: {"service_count": MAIL_SERVICE_COUNT} for name in REUSED_MAIL_PROCESSES})
    return ours


def builtin_services() -> dict[str, dict[str, object]]:
    services = T.BUILTIN_SERVICES
    ours = cote_service_defaults()
    out: dict[str, dict[str, object]] = {}
    for name, body in services.items():
        assert isinstance(body, dict)
        out[name] = {**body, **ours.get(name, {})}
    return out


SPECIAL_USE = frozenset({"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent",
                         "\\Trash", "\\Important"})
# Names ``protocols`` accepts (imaps, pop3s and managesieve are old aliases doveconf still takes).
PROTOCOLS = frozenset({"imap", "pop3", "lmtp", "sieve", "submission", "none", "imaps", "pop3s",
                       "managesieve"})


def is_secret(key: str) -> bool:
    """doveconf hides these values unless -P is given."""
    return key.endswith(("_password", "_key", "_nonce")) or key == "ssl_dh"


# Word-list settings doveconf validates: key -> (allowed words, error prefix, word format).
_WORKAROUNDS_SMTP = frozenset({"whitespace-before-path", "mailbox-for-path"})
WORD_LISTS: dict[str, tuple[frozenset[str], str]] = {
    "imap_client_workarounds": (
        frozenset({"delay-newmail", "tb-extra-mailbox-sep", "tb-lsub-flags"}),
        "imap_client_workarounds: Unknown workaround: {}"),
    "pop3_client_workarounds": (frozenset({"outlook-no-nuls", "oe-ns-eoh"}),
                                "pop3_client_workarounds: Unknown workaround: {}"),
    "lmtp_client_workarounds": (_WORKAROUNDS_SMTP,
                                "lmtp_client_workarounds: Unknown workaround: {}"),
    "submission_client_workarounds": (_WORKAROUNDS_SMTP | {"implicit-auth-external"},
                                      "submission_client_workarounds: Unknown workaround: {}"),
    "managesieve_client_workarounds": (frozenset(),
                                       "managesieve_client_workarounds: Unknown workaround: {}"),
    "ssl_options": (frozenset({"no_compression", "no_ticket"}),
                    "ssl_options: unknown flag: '{}'"),
    "imapc_features": (frozenset({
        "rfc822.size", "fetch-headers", "gmail-migration", "search", "zimbra-workarounds",
        "no-examine", "proxyauth", "fetch-msn-workarounds", "fetch-fix-broken-mails", "modseq",
        "delay-login", "fetch-bodystructure", "send-id", "fetch-empty-is-expunged",
        "throttle:*"}), "imapc_features: Unknown feature: {}"),
    "pop3c_features": (frozenset({"no-pipelining"}), "pop3c_features: Unknown feature: {}"),
    "dsync_features": (frozenset({"empty-header-workaround"}),
                       "dsync_features: Unknown feature: {}"),
    "mail_attachment_detection_options": (
        frozenset({"add-flags", "add-flags-on-save", "content-type=*", "exclude-inlined",
                   "no-flags-on-fetch"}), "mail_attachment_detection_options: Unknown option: {}"),
}
# Word lists that managesieve-login checks too (doveconf then misses the sieve capability).
SIEVE_DUMP_CHECKED = frozenset({"managesieve_client_workarounds", "imapc_features",
                                "pop3c_features", "mail_attachment_detection_options"})
# The one list whose words doveconf compares case-sensitively (the others ignore case).
CASED_WORD_LISTS = frozenset({"mail_attachment_detection_options"})
# Lists split on blanks only (the others also split on commas).
BLANK_SEPARATED_WORD_LISTS = frozenset({"mail_attachment_detection_options"})


def word_allowed(key: str, word: str) -> bool:
    """Whether ``word`` is valid in the word-list setting ``key`` (``x*`` allows a prefix)."""
    allowed = WORD_LISTS[key][0]
    if key not in CASED_WORD_LISTS:
        word = word.lower()
    return word in allowed or any(a.endswith("*") and word.startswith(a[:-1]) for a in allowed)
SYSLOG_FACILITIES = frozenset({
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "local0", "local1", "local2", "local3",
    "local4", "local5", "local6", "local7", "lpr", "mail", "news", "syslog", "user", "uucp"})
