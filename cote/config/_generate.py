"""Regenerate ``settings_table.py`` by observing the installed Dovecot 2.3 ``doveconf``.

Setting names, defaults and value types are compatibility facts: the oracle is the ``doveconf``
binary itself.  This script asks it for every default (``-a``) and classifies each setting's type
from the error ``doveconf`` gives for a deliberately bad value.  Run it by hand
(``python -m cote.config._generate``) after a Dovecot upgrade and review the diff.
"""

from __future__ import annotations

import os
import pprint
import subprocess
import tempfile

HEADER = "managesieve_sieve_capability = x\nmanagesieve_notify_capability = y\n"
SECTIONS_CONF = """namespace inbox {
  mailbox Sent {
  }
}
passdb {
  driver = pam
}
userdb {
  driver = passwd
}
"""

# Enum values (the first is the default); every value is verified against doveconf below.
ENUMS: dict[str, tuple[str, ...]] = {
    "ssl": ("yes", "no", "required"),
    "auth_verbose_passwords": ("no", "plain", "sha1"),
    "namespace/list": ("yes", "no", "children"),
    "mail_fsync": ("optimized", "always", "never"),
    "lock_method": ("fcntl", "flock", "dotlock"),
    "imap_fetch_failure": ("disconnect-immediately", "disconnect-after", "no-after"),
    "lmtp_hdr_delivery_address": ("final", "none", "original"),
    "pop3_delete_type": ("default", "expunge", "flag"),
    "pop3_uidl_duplicates": ("allow", "rename"),
    "mbox_md5": ("apop3d", "all"),
    "doveadm_ssl": ("no", "ssl", "starttls"),
    "submission_relay_ssl": ("no", "smtps", "starttls"),
    "imapc_ssl": ("no", "imaps", "starttls"),
    "pop3c_ssl": ("no", "pop3s", "starttls"),
    "submission_ssl": ("no", "smtps", "starttls"),
    "namespace/type": ("private", "shared", "public"),
    "namespace/mailbox/auto": ("no", "create", "subscribe"),
    "passdb/skip": ("never", "authenticated", "unauthenticated"),
    "userdb/skip": ("never", "found", "notfound"),
    "passdb/auth_verbose": ("default", "yes", "no"),
    "userdb/auth_verbose": ("default", "yes", "no"),
}
RESULTS = ("return-ok", "return", "return-fail", "continue", "continue-ok", "continue-fail")
for _db in ("passdb", "userdb"):
    for _r in ("result_success", "result_failure", "result_internalfail"):
        _d = {"result_success": "return-ok"}.get(_r, "continue")
        ENUMS[f"{_db}/{_r}"] = (_d, *[v for v in RESULTS if v != _d])

Tree = dict[str, object]
CHECKED: dict[str, str] = {}

# Settings doveconf knows but leaves out of -a (found by asking doveconf about every
# setting-like string in Dovecot's binaries). Their defaults come from -h; None when -h prints
# nothing at all.
HIDDEN = ("imap_urlauth_stream_user", "imap_urlauth_submit_user", "mail_cache_max_size",
          "mail_cache_min_mail_count", "mail_cache_purge_continued_percentage",
          "mail_cache_purge_delete_percentage", "mail_cache_purge_header_continue_count",
          "mail_cache_purge_min_size", "mail_cache_record_max_size",
          "mail_cache_unaccessed_field_drop", "mail_index_log2_max_age",
          "mail_index_log_rotate_max_size", "mail_index_log_rotate_min_age",
          "mail_index_log_rotate_min_size", "mail_index_rewrite_max_log_bytes",
          "mail_index_rewrite_min_log_bytes", "submission_backend_capabilities")


def doveconf(conf: str, *args: str) -> tuple[int, str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as fh:
        fh.write(conf)
    try:
        proc = subprocess.run(["doveconf", "-c", fh.name, *args], check=False,
                              capture_output=True, text=True)
    finally:
        os.unlink(fh.name)
    return proc.returncode, proc.stdout, proc.stderr


def parse_dump(text: str) -> Tree:
    """Parse ``doveconf -a`` output into nested dicts (sections keyed "kind name")."""
    root: Tree = {}
    stack = [root]
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("{"):
            sec: Tree = {}
            stack[-1][s[:-1].strip()] = sec
            stack.append(sec)
        elif s == "}":
            stack.pop()
        else:
            k, _, v = s.partition(" = ")
            if s.endswith(" ="):
                k, v = s[:-2], ""
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            stack[-1][k] = v
    return root


def wrap(path: list[str], body: str) -> str:
    """Put ``body`` inside the section path (e.g. ["service imap", "unix_listener x"])."""
    out = body
    for p in reversed(path):
        out = f"{p} {{\n{out}\n}}\n"
    return out


def classify(path: list[str], key: str, extra: str = "") -> str:
    def err(value: str) -> str:
        rc, _out, errtext = doveconf(HEADER + wrap(path, f"{extra}{key} = {value}"), "-n")
        if rc == 0:
            return ""
        first = errtext.splitlines()[0]
        return first.split(": ", 3)[-1] if ": " in first else first

    e = err("@@bad")
    if not e:
        return "str"
    if e.startswith("Invalid boolean"):
        return "bool"
    if e.startswith("Invalid size"):
        return "size"
    if e.startswith("Invalid time"):
        return "time" if err("500 ms").startswith("Milliseconds") else "time_msecs"
    if e.startswith("Invalid port"):
        return "port"
    if e.startswith("Invalid number"):
        _rc, out, _ = doveconf(HEADER + wrap(path, f"{extra}{key} = 010"), "-n")
        return "octal" if "= 010" in out else "uint"
    if e.startswith("Invalid value"):
        return "enum"
    CHECKED[("/".join(path) + "/" + key).lstrip("/")] = e
    return "str"


def main() -> None:
    _, out, _ = doveconf(HEADER, "-a")
    base = parse_dump(out)
    _, out2, _ = doveconf(HEADER + SECTIONS_CONF, "-a")
    sec = parse_dump(out2)
    ns = sec["namespace inbox"]
    assert isinstance(ns, dict)
    mbox = ns.pop("mailbox Sent")
    passdb = sec["passdb"]
    userdb = sec["userdb"]
    assert isinstance(mbox, dict) and isinstance(passdb, dict) and isinstance(userdb, dict)
    types: dict[str, str] = {}
    glob = {k: v for k, v in base.items() if isinstance(v, str)}
    # The managesieve capability defaults come from Pigeonhole's runtime dump: ask without HEADER.
    _, out0, _ = doveconf("", "-a")
    real = parse_dump(out0)
    for k in ("managesieve_sieve_capability", "managesieve_notify_capability"):
        glob[k] = str(real[k])
    for k in glob:
        types[k] = classify([], k)
    hidden: dict[str, tuple[str, str | None]] = {}
    for k in HIDDEN:
        _, out_h, _ = doveconf(HEADER, "-h", k)
        hidden[k] = (classify([], k), out_h[:-1] if out_h else None)
    services = {k[8:]: v for k, v in base.items() if k.startswith("service ")}
    svc_keys: dict[str, str] = {}
    inet_keys: dict[str, str] = {}
    unix_keys: dict[str, str] = {}
    imap_login = services["imap-login"]
    assert isinstance(imap_login, dict)
    for k, v in imap_login.items():
        if isinstance(v, str):
            svc_keys[k] = classify(["service imap-login"], k)
    for k in imap_login["inet_listener imap"]:
        inet_keys[k] = classify(["service imap-login", "inet_listener imap"], k)
    for k in ("user", "group", "mode"):
        unix_keys[k] = classify(["service imap", "unix_listener imap-master"], k)
    ns_keys = {k: classify(["namespace inbox"], k) for k in ns}
    mb_keys = {k: classify(["namespace inbox", "mailbox Sent"], k) for k in mbox}
    pdb_keys = {k: classify(["passdb"], k, "driver = pam\n") for k in passdb if k != "driver"}
    pdb_keys["driver"] = "str"
    udb_keys = {k: classify(["userdb"], k, "driver = passwd\n") for k in userdb if k != "driver"}
    udb_keys["driver"] = "str"
    enums = dict(ENUMS)
    for name, vals in enums.items():
        *path_parts, key = name.split("/")
        ctx = {"namespace": ["namespace inbox"], "passdb": ["passdb"], "userdb": ["userdb"]}
        path = ctx.get(path_parts[0], []) if path_parts else []
        if path_parts[1:] == ["mailbox"]:
            path = ["namespace inbox", "mailbox Sent"]
        for v in vals:
            _rc, _, e = doveconf(HEADER + wrap(path, f"{key} = {v}"), "-n")
            assert "Invalid value" not in e, (name, v, e)
    with open(os.path.join(os.path.dirname(__file__), "settings_table.py"), "w") as fh:
        fh.write('"""Dovecot 2.3.19 settings: names, types and defaults '
                 '(generated by _generate.py)."""\n\n')
        fh.write("# flake8: noqa\n# ruff: noqa: E501\n")
        fh.write("from __future__ import annotations\n\n")
        for name, obj in (
            ("GLOBAL", {k: (types[k], glob[k]) for k in sorted(glob)}),
            ("HIDDEN_GLOBAL", hidden),
            ("SERVICE", {k: (svc_keys[k], "") for k in sorted(svc_keys)}),
            ("INET_LISTENER", {k: (inet_keys[k], "") for k in sorted(inet_keys)}),
            ("UNIX_LISTENER", {k: (unix_keys[k], "") for k in sorted(unix_keys)}),
            ("NAMESPACE", {k: (ns_keys[k], ns[k]) for k in sorted(ns)}),
            ("MAILBOX", {k: (mb_keys[k], mbox[k]) for k in sorted(mbox)}),
            ("PASSDB", {k: (pdb_keys[k], passdb[k] if k != "driver" else "")
                        for k in sorted(passdb)}),
            ("USERDB", {k: (udb_keys[k], userdb[k] if k != "driver" else "")
                        for k in sorted(userdb)}),
            ("ENUMS", enums),
            ("CHECKED", dict(sorted(CHECKED.items()))),
            ("BUILTIN_SERVICES", services),
        ):
            typed = name == "BUILTIN_SERVICES"
            fh.write(f"{name}: dict[str, object] = " if typed else f"{name} = ")
            fh.write(pprint.pformat(obj, width=100, sort_dicts=False))
            fh.write("\n\n")


if __name__ == "__main__":
    main()
