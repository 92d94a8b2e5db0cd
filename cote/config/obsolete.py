"""Settings of Dovecot 1.x/2.0-2.2 that Dovecot 2.3 still accepts, converts and warns about.

A config carried over from an old Dovecot keeps working with 2.3 (with ``Obsolete setting``
warnings); it must keep working with cote too. ``convert`` says what an obsolete ``key = value``
becomes: nothing, another global setting, or settings of built-in services.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOGIN_SERVICES = ("imap-login", "managesieve-login", "pop3-login")
MAIL_SERVICES = ("imap", "managesieve", "pop3")

NOTE = "NOTE: You can get a new clean config file with: {prog} -Pn > dovecot-new.conf"


@dataclass(slots=True)
class Conversion:
    warning: str
    globals: dict[str, str] = field(default_factory=dict)
    # (service name, listener "kind name" or "", key) -> value
    services: dict[tuple[str, str, str], str] = field(default_factory=dict)
    plugin: dict[str, str] = field(default_factory=dict)
    error: str = ""      # doveconf logs it as an error but goes on


_REMOVED = ("login_dir", "dbox_rotate_min_size", "dbox_rotate_days",
            "mail_log_max_lines_per_sec", "director_consistent_hashing",
            "maildir_copy_preserve_filename")
_NOT_NEEDED = ("ssl_parameters_regenerate", "ssl_dh_parameters_length")
_RENAMED = {
    "dbox_rotate_size": "mdbox_rotate_size",
    "mail_cache_compress_min_size": "mail_cache_purge_min_size",
    "mail_cache_compress_delete_percentage": "mail_cache_purge_delete_percentage",
    "mail_cache_compress_continued_percentage": "mail_cache_purge_continued_percentage",
    "mail_cache_compress_header_continue_count": "mail_cache_purge_header_continue_count",
}
_FILES = {"ssl_cert_file": "ssl_cert", "ssl_key_file": "ssl_key", "ssl_ca_file": "ssl_ca"}
# old name -> (services, service setting, how the value converts)
_SERVICE = {
    "login_user": (LOGIN_SERVICES, "user", ""),
    "login_chroot": (LOGIN_SERVICES, "chroot", "chroot"),
    "login_executable": (LOGIN_SERVICES, "executable", ""),
    "login_process_size": (LOGIN_SERVICES, "vsz_limit", "megabytes"),
    "login_processes_count": (LOGIN_SERVICES, "process_min_avail", ""),
    "login_max_processes_count": (LOGIN_SERVICES, "process_limit", ""),
    "login_process_per_connection": (LOGIN_SERVICES, "service_count", "bool01"),
    "login_max_connections": (LOGIN_SERVICES, "client_limit", ""),
    "max_mail_processes": (MAIL_SERVICES, "process_limit", ""),
    "mail_executable": (MAIL_SERVICES, "executable", ""),
    "mail_process_size": (MAIL_SERVICES, "vsz_limit", "megabytes"),
    "mail_drop_priv_before_exec": (MAIL_SERVICES, "drop_priv_before_exec", ""),
    "auth_user": (("auth",), "user", ""),
    "auth_chroot": (("auth",), "chroot", ""),
    "auth_executable": (("auth",), "executable", ""),
    "auth_process_size": (("auth",), "vsz_limit", "megabytes"),
}
_SSL_PROTOCOLS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2")

OBSOLETE = frozenset({*_REMOVED, *_NOT_NEEDED, *_RENAMED, *_FILES, *_SERVICE, "auth_count",
                      "fsync_disable", "ssl_disable", "ssl_protocols", "sieve_storage",
                      "ssl_listen"})


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "y", "1")


def convert(key: str, value: str, protocol: str | None = None) -> Conversion:
    """What ``key = value`` (an OBSOLETE key) means now; ``protocol`` of an enclosing filter."""
    if key in _REMOVED:
        return Conversion(f"{key} has been removed")
    if key in _NOT_NEEDED:
        return Conversion(f"{key} is no longer needed")
    if key == "auth_count":
        return Conversion("auth_count has been removed, and its value must be 1")
    if key in _RENAMED:
        return Conversion(f"{key} has been renamed to {_RENAMED[key]}", {_RENAMED[key]: value})
    if key in _FILES:
        new = _FILES[key]
        return Conversion(f"{key} has been replaced by {new} = <file", {new: "<" + value})
    if key == "fsync_disable":
        v = {"yes": "never", "no": "optimized"}.get(value.lower(), value)
        return Conversion("fsync_disable has been renamed to mail_fsync", {"mail_fsync": v})
    if key == "ssl_disable":
        v = {"yes": "no", "no": "yes"}.get(value.lower(), value)
        return Conversion("ssl_disable has been renamed to ssl", {"ssl": v})
    if key == "ssl_protocols":
        conv = Conversion("ssl_protocols has been replaced by ssl_min_protocol")
        minimum = _min_protocol(value)
        if minimum.startswith(("Unrecognized", "All protocols")):
            conv.error = (f"Could not find a minimum ssl_min_protocol setting from "
                          f"ssl_protocols = {value}: {minimum}")
        elif minimum:
            conv.globals["ssl_min_protocol"] = minimum
        return conv
    if key == "sieve_storage":
        return Conversion("sieve_storage has been moved into plugin { sieve_dir }",
                          plugin={"sieve_storage": value})
    if key == "ssl_listen":
        conv = Conversion("protocol { ssl_listen } has been replaced by service { "
                          "inet_listener { address } }")
        for proto in (protocol,) if protocol else ("imap", "pop3"):
            conv.services[(f"{proto}-login", f"inet_listener {proto}s", "address")] = value
        return conv
    services, setting, how = _SERVICE[key]
    where = "service auth" if services == ("auth",) else "service"
    conv = Conversion(f"{key} has been replaced by {where} {{ {setting} }}")
    if how == "megabytes":
        value += "M"
    elif how == "bool01":
        value = "1" if _yes(value) else "0"
    elif how == "chroot":
        value = "" if value.lower() in ("no", "n", "0", "") else "login"
    for svc in services:
        conv.services[(svc, "", setting)] = value
    return conv


def _min_protocol(value: str) -> str:
    """ssl_min_protocol for an old ``ssl_protocols`` list ("" leaves it alone, or the reason)."""
    included: set[str] = set()
    excluded: set[str] = set()
    for word in value.split():
        name = word.lstrip("!")
        if name not in _SSL_PROTOCOLS:
            return f"Unrecognized protocol '{name}'"
        (excluded if word.startswith("!") else included).add(name)
    allowed = [p for p in _SSL_PROTOCOLS if p in (included or _SSL_PROTOCOLS) and p not in excluded]
    return allowed[0] if allowed else "All protocols disabled"


def convert_protocols(value: str) -> tuple[str, list[str], list[str]]:
    """Old protocol names in ``protocols``: the new value, doveconf's warnings, and the
    protocols whose plain (non-TLS) listener doveconf then disables."""
    words = value.split()
    warnings: list[str] = []
    disabled: list[str] = []
    if "managesieve" in words:
        words = ["sieve" if w == "managesieve" else w for w in words]
        warnings.append("protocols=managesieve has been renamed to protocols=sieve")
    for plain in ("imap", "pop3"):
        old = plain + "s"
        if old not in words:
            continue
        words = [w for w in words if w != old]
        if plain in words:
            warnings.append(f"'{old}' protocol is no longer necessary, remove it")
        else:
            words.append(plain)
            disabled.append(plain)
            warnings.append(
                f"'{old}' protocol can no longer be specified (use protocols={plain}). to "
                f"disable non-ssl {plain}, use service {plain}-login {{ inet_listener {plain} "
                "{ port=0 } }")
    return " ".join(words), warnings, disabled
