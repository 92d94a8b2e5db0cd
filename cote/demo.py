"""Write a ready-to-run demo setup: ``python -m cote.demo DIR``.

The README's first command (``sudo scripts/demo``) uses this to give an admin a working server
in one step, without touching /etc/dovecot: one self-contained ``dovecot.conf`` serving IMAP,
IMAPS, POP3, POP3S, LMTP and ManageSieve on high ports of 127.0.0.1, a user ``demo`` with the
password ``demo`` (stored as SHA512-CRYPT in a passwd-file), Maildir under ``DIR/mail``, a
self-signed certificate, and base/state/log directories under DIR.

Re-running is safe: the config is rewritten, but the certificate, the users file and all mail
are kept.
"""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cote.auth.schemes import generate

DEFAULT_PORTS: Mapping[str, int] = {
    "imap": 10143, "imaps": 10993, "pop3": 10110, "pop3s": 10995, "lmtp": 10024,
    "sieve": 14190,
}
DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented demo password


@dataclass(frozen=True)
class Demo:
    """Where the demo setup lives and how to reach it."""

    directory: Path
    ports: Mapping[str, int]
    mail_uid: int
    mail_gid: int
    created: list[str] = field(default_factory=list)  # what this run wrote for the first time

    @property
    def config(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def users(self) -> Path:
        return self.directory / "users"

    @property
    def cert(self) -> Path:
        return self.directory / "ssl" / "cert.pem"

    @property
    def key(self) -> Path:
        return self.directory / "ssl" / "key.pem"

    @property
    def mail(self) -> Path:
        return self.directory / "mail"

    @property
    def log(self) -> Path:
        return self.directory / "log" / "cote.log"


def _account(names: Sequence[str]) -> str:
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise LookupError(f"none of these system users exists: {', '.join(names)}")


def _mail_owner(account: str | None) -> tuple[int, int]:
    """The uid/gid mail is stored as: the given account, the user who ran sudo, the owner
    of the current process when it is not root, or Debian's ``mail`` account."""
    if account is not None:
        entry = pwd.getpwnam(account)
        return entry.pw_uid, entry.pw_gid
    sudo_uid = os.environ.get("SUDO_UID", "")
    if sudo_uid.isdigit() and int(sudo_uid) != 0:
        gid = os.environ.get("SUDO_GID", "")
        return int(sudo_uid), int(gid) if gid.isdigit() else pwd.getpwuid(int(sudo_uid)).pw_gid
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    entry = pwd.getpwnam("mail")
    return entry.pw_uid, entry.pw_gid


def make_certificate(cert_path: Path, key_path: Path, hostname: str | None = None) -> None:
    """A self-signed RSA certificate for localhost, 127.0.0.1, ::1 and this host's name."""
    name = hostname or socket.gethostname()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cote demo")])
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(name),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.IPAddress(ipaddress.ip_address("::1"))]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def render_config(demo: Demo, *, login_user: str, internal_user: str) -> str:
    d = demo.directory
    p = demo.ports
    return f"""\
# cote demo setup, written by `python -m cote.demo {d}`.
# Everything lives under {d}; nothing in /etc is used. Running the command
# again rewrites this file but keeps the certificate, {demo.users.name} and all mail.
# Log in as "{DEMO_USER}" with password "{DEMO_PASSWORD}".

base_dir = {d}/run
state_dir = {d}/state
instance_name = cote-demo
log_path = {demo.log}

protocols = imap pop3 lmtp sieve
listen = 127.0.0.1

default_login_user = {login_user}
default_internal_user = {internal_user}

ssl = yes
ssl_cert = <{demo.cert}
ssl_key = <{demo.key}

auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {demo.users}
}}
userdb {{
  driver = passwd-file
  args = {demo.users}
}}

mail_location = maildir:{demo.mail}/%n
first_valid_uid = {min(demo.mail_uid, 500)}
mail_privileged_group =

namespace inbox {{
  inbox = yes
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
}}

plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}

service imap-login {{
  inet_listener imap {{
    port = {p["imap"]}
  }}
  inet_listener imaps {{
    port = {p["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {p["pop3"]}
  }}
  inet_listener pop3s {{
    port = {p["pop3s"]}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {p["lmtp"]}
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    port = {p["sieve"]}
  }}
}}
"""


def write_demo(directory: str | os.PathLike[str], *, ports: Mapping[str, int] | None = None,
               mail_account: str | None = None) -> Demo:
    """Create or refresh the demo setup in ``directory``; see the module docstring."""
    base = Path(directory).absolute()
    uid, gid = _mail_owner(mail_account)
    demo = Demo(base, dict(DEFAULT_PORTS, **(ports or {})), uid, gid)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    for sub in ("state", "log", "ssl"):
        (base / sub).mkdir(mode=0o755, exist_ok=True)
    for sub in ("mail", "home"):
        path = base / sub
        if not path.exists():
            path.mkdir(mode=0o700)
            demo.created.append(str(path))
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
    if not (demo.cert.exists() and demo.key.exists()):
        make_certificate(demo.cert, demo.key)
        demo.created.append(str(demo.cert))
    login_user = _account(["dovenull", "nobody"])
    internal_user = _account(["dovecot", "nobody"])
    if not demo.users.exists():
        stored = generate("SHA512-CRYPT", DEMO_PASSWORD.encode())
        demo.users.write_text(
            f"{DEMO_USER}:{stored}:{uid}:{gid}::{base}/home/{DEMO_USER}::\n")
        demo.created.append(str(demo.users))
        # The auth process runs as the internal user: let its group read the hashes.
        demo.users.chmod(0o640)
        if os.geteuid() == 0:
            os.chown(demo.users, 0, pwd.getpwnam(internal_user).pw_gid)
    demo.config.write_text(render_config(demo, login_user=login_user,
                                         internal_user=internal_user))
    return demo


def _unreachable_parent(path: Path, uid: int, gid: int) -> Path | None:
    """The first parent directory that ``uid`` cannot enter, if any (mail processes run as it)."""
    groups = {gid} | {g.gr_gid for g in grp.getgrall()
                      if pwd.getpwuid(uid).pw_name in g.gr_mem} if uid != 0 else set()
    for parent in reversed(path.parents):
        st = parent.stat()
        if uid in (0, st.st_uid):
            continue
        bit = 0o010 if st.st_gid in groups else 0o001
        if not st.st_mode & bit:
            return parent
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: python -m cote.demo DIR\n")
        return 64
    try:
        demo = write_demo(args[0])
    except (OSError, LookupError) as exc:
        sys.stderr.write(f"cote.demo: {exc}\n")
        return 1
    blocked = _unreachable_parent(demo.mail, demo.mail_uid, demo.mail_gid)
    if blocked is not None:
        sys.stderr.write(f"cote.demo: warning: uid {demo.mail_uid} cannot enter {blocked}; "
                         "mail processes will fail. Choose a DIR outside it.\n")
    owner = pwd.getpwuid(demo.mail_uid).pw_name
    ports = ", ".join(f"{name} {port}" for name, port in demo.ports.items())
    print(f"cote demo setup in {demo.directory}\n"
          f"  config: {demo.config}\n"
          f"  login:  {DEMO_USER} / {DEMO_PASSWORD} (mail stored as {owner} in {demo.mail})\n"
          f"  ports on 127.0.0.1: {ports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
