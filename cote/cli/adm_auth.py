"""``coteadm auth test|login|lookup|cache flush`` and ``coteadm user``: doveadm's auth commands.

They talk to cote's auth daemon over its sockets with the sans-IO codecs of
``cote.auth.protocol`` (``auth-client``/``auth-login`` for a PLAIN authentication,
``auth-userdb``/``auth-master`` for PASS, USER, LIST, REQUEST and CACHE-FLUSH) and print what
doveadm prints: ``passdb: <user> auth succeeded`` + ``extra fields:``, the ``  key       : value``
lookup blocks, ``user``'s field/value table through the formatter, exit codes 67 (no such
user), 77 (authentication failed) and 75 (the daemon could not answer).
"""

from __future__ import annotations

import base64
import fnmatch
import getopt
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from cote.auth.protocol import auth_master
from cote.auth.protocol.escape import join_line, split_line
from cote.cli.adm_print import Output
from cote.config import Config
from cote.mailproc.mailuser import MailUserError, resolve, variables
from cote.variables import VariableError, expand

EX_USAGE = 64
EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_NOPERM = 77
TIMEOUT = 30.0

_INFO_KEYS = {"service": "service", "session": "session", "local_name": "local_name",
              "lip": "lip", "rip": "rip", "lport": "lport", "rport": "rport",
              "real_lip": "real_lip", "real_rip": "real_rip", "real_lport": "real_lport",
              "real_rport": "real_rport"}


class AuthConnError(Exception):
    """The socket could not be reached or the daemon broke the conversation."""


@dataclass
class AuthInfo:
    """``-x`` auth-info: the request's service/ips/ports plus extra fields."""

    params: dict[str, str] = field(default_factory=lambda: {"service": "doveadm"})
    extra: list[str] = field(default_factory=list)

    def add(self, arg: str) -> None:
        key, eq, value = arg.partition("=")
        if eq and key in _INFO_KEYS:
            self.params[_INFO_KEYS[key]] = value
        elif key.startswith("forward_"):
            self.extra.append(arg)
        else:
            self.extra.append(arg)


class LineSocket:
    """A blocking UNIX-socket line reader/writer with a timeout."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError as e:
                raise AuthConnError(str(e)) from e
            if not data:
                return
            yield data

    def lines(self) -> Iterator[list[str]]:
        for data in self.chunks():
            self.buf += data
            while b"\n" in self.buf:
                line, _, self.buf = self.buf.partition(b"\n")
                yield split_line(line)

    def close(self) -> None:
        self.sock.close()


def _strerror(e: OSError) -> str:
    return e.strerror or str(e)


# -- auth-client: PLAIN authentication ---------------------------------------------------------


@dataclass
class AuthResult:
    success: bool
    args: list[str]
    spid: int = 0
    request_id: int = 1
    cookie: str = ""


def authenticate(path: str, user: str, password: str, info: AuthInfo,
                 master_user: str | None = None) -> AuthResult:
    """One PLAIN AUTH over an auth-client style socket (raises OSError, AuthConnError)."""
    conn = LineSocket(path)
    try:
        conn.send(join_line(["VERSION", "1", "2"]) + join_line(["CPID", str(os.getpid())]))
        hs: dict[str, str] = {}
        lines = conn.lines()
        for args in lines:
            if args[0] == "DONE":
                break
            if len(args) > 1:
                hs[args[0]] = args[1]
        else:
            raise AuthConnError("Auth server disconnected during handshake")
        resp = f"{user}\0{master_user or user}\0{password}".encode("utf-8", "surrogateescape")
        parts = ["AUTH", "1", "PLAIN", *[f"{k}={v}" for k, v in info.params.items()],
                 *info.extra, "resp=" + base64.b64encode(resp).decode("ascii")]
        conn.send(join_line(parts))
        for args in lines:
            if args[0] in ("OK", "FAIL", "CONT") and len(args) > 1 and args[1] == "1":
                spid = int(hs.get("SPID", "0") or 0) if hs.get("SPID", "").isdigit() else 0
                return AuthResult(args[0] == "OK", args[2:] if args[0] != "CONT" else [],
                                  spid, 1, hs.get("COOKIE", ""))
        raise AuthConnError("Auth server disconnected")
    finally:
        conn.close()


def _auth_args(args: Sequence[str], opts_spec: str, prog: str
               ) -> tuple[dict[str, str], AuthInfo, list[str]] | None:
    try:
        opts, rest = getopt.getopt(list(args), opts_spec)
    except getopt.GetoptError as e:
        sys.stderr.write(f"{prog}: invalid option -- '{e.opt}'\n")
        return None
    info = AuthInfo()
    values: dict[str, str] = {}
    for opt, val in opts:
        if opt == "-x":
            info.add(val)
        else:
            values[opt] = val
    return values, info, rest


def _password(rest: list[str]) -> str:
    if len(rest) > 1:
        return rest[1]
    if sys.stdin.isatty():
        sys.stderr.write("Password: ")
    line = sys.stdin.readline()
    return line.rstrip("\n")


def cmd_auth_test(args: Sequence[str], base_dir: str, out: Output) -> int:
    parsed = _auth_args(args, "a:x:M:", "test")
    if parsed is None or not parsed[2]:
        sys.stderr.write("doveadm auth test [-a <auth socket path>] [-x <auth info>] "
                         "[-M <master user>] <user> [<password>]\n")
        return EX_USAGE
    values, info, rest = parsed
    path = values.get("-a", os.path.join(base_dir, "auth-client"))
    result = _authenticate_and_print(out, path, rest, info, values.get("-M"))
    return 0 if result is not None and result.success else EX_NOPERM


def _authenticate_and_print(out: Output, path: str, rest: list[str], info: AuthInfo,
                            master: str | None) -> AuthResult | None:
    """auth test/login's AUTH on ``path`` and doveadm's report of it; None (the error
    said on stderr) when the auth-client socket could not be used."""
    user = rest[0]
    try:
        result = authenticate(path, user, _password(rest), info, master)
    except OSError as e:
        sys.stderr.write(f"Error: auth-client: conn unix:{path}: connect({path}) failed: "
                         f"{_strerror(e)}\n")
        return None
    except AuthConnError as e:
        sys.stderr.write(f"Error: auth-client: conn unix:{path}: {e}\n")
        return None
    out.write(f"passdb: {user} auth {'succeeded' if result.success else 'failed'}\n")
    if result.args:
        out.write("extra fields:\n" + "".join(f"  {a}\n" for a in result.args))
    return result


def cmd_auth_login(args: Sequence[str], base_dir: str, out: Output) -> int:
    parsed = _auth_args(args, "a:m:x:M:", "login")
    if parsed is None or not parsed[2]:
        sys.stderr.write("doveadm auth login [-a <auth-login socket path>] [-m <auth-master "
                         "socket path>] [-x <auth info>] [-M <master user>] <user> "
                         "[<password>]\n")
        return EX_USAGE
    values, info, rest = parsed
    login_path = values.get("-a", os.path.join(base_dir, "auth-login"))
    master_path = values.get("-m", os.path.join(base_dir, "auth-master"))
    result = _authenticate_and_print(out, login_path, rest, info, values.get("-M"))
    if result is None or not result.success:
        return EX_NOPERM
    try:
        conn = LineSocket(master_path)
    except OSError as e:
        sys.stderr.write(f"Error: auth-master: connect({master_path}) failed: "
                         f"{_strerror(e)}\n")
        sys.stderr.write("Error: userdb lookup failed: Internal error occurred. "
                         "Refer to server log for more information.\n")
        return EX_NOPERM
    try:
        cookie = bytes.fromhex(result.cookie) if len(result.cookie) == 32 else bytes(16)
        conn.send(auth_master.ClientConnection.hello() + auth_master.ClientConnection.request(
            1, os.getpid(), result.request_id, cookie))
        for reply in conn.lines():
            if reply[0] == "USER" and len(reply) > 2 and reply[1] == "1":
                out.write("userdb extra fields:\n" + "".join(f"  {a}\n" for a in reply[2:]))
                return 0
            if reply[0] in ("NOTFOUND", "FAIL") and len(reply) > 1 and reply[1] == "1":
                reason = next((a[7:] for a in reply[2:] if a.startswith("reason=")),
                              "Internal error occurred. Refer to server log for more "
                              "information.")
                sys.stderr.write(f"Error: userdb lookup failed: {reason}\n")
                return EX_NOPERM
    except (OSError, AuthConnError) as e:
        sys.stderr.write(f"Error: userdb lookup failed: {e}\n")
        return EX_NOPERM
    finally:
        conn.close()
    sys.stderr.write("Error: userdb lookup failed: Disconnected from auth server\n")
    return EX_NOPERM


# -- auth-master / auth-userdb ------------------------------------------------------------------


class MasterClient:
    """Requests over one auth-master (or auth-userdb) connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: LineSocket | None = None
        self.codec = auth_master.ClientConnection()
        self.next_id = 0
        self.pending: list[auth_master.ClientEvent] = []

    def _connect(self) -> LineSocket:
        if self.conn is None:
            self.conn = LineSocket(self.path)
            self.conn.send(self.codec.hello())
        return self.conn

    def _events(self) -> Iterator[auth_master.ClientEvent]:
        conn = self._connect()
        for data in conn.chunks():
            for event in self.codec.feed(data):
                if isinstance(event, auth_master.Disconnect):
                    raise AuthConnError(event.reason)
                yield event
        raise AuthConnError("Disconnected from auth server, aborting")

    def ask(self, line_of: object) -> auth_master.ClientEvent:
        self.next_id += 1
        conn = self._connect()
        assert callable(line_of)
        conn.send(line_of(self.next_id))
        for event in self._events():
            if getattr(event, "id", None) == self.next_id:
                return event
        raise AuthConnError("Disconnected from auth server, aborting")

    def list_users(self, params: dict[str, str]) -> Iterator[str]:
        self.next_id += 1
        rid = self.next_id
        self._connect().send(self.codec.list_users(rid, params))
        for event in self._events():
            if isinstance(event, auth_master.ListEntry) and event.id == rid:
                yield event.user
            elif isinstance(event, auth_master.ListDone) and event.id == rid:
                if event.failed:
                    raise AuthConnError("user listing failed")
                return

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _lookup_error(kind: str, user: str, path: str, e: Exception) -> None:
    if isinstance(e, OSError):
        sys.stderr.write(f"Error: auth-master: {kind}({user}): connect({path}) failed: "
                         f"{_strerror(e)}\n")
    sys.stderr.write(f"Error: {kind} failed for {user}" +
                     (f": {e}" if not isinstance(e, OSError) and str(e) else "") + "\n")


def _user_input(client: MasterClient, user: str, info: AuthInfo, *, show_field: str | None,
                userdb: bool, out: Output) -> int:
    """doveadm's cmd_user_input: 1 found, 0 not found, -1 failed."""
    name = "userdb lookup" if userdb else "passdb lookup"
    params = dict(info.params)
    try:
        if userdb:
            event = client.ask(lambda i: client.codec.user(i, user, params))
        else:
            event = client.ask(lambda i: client.codec.passdb(i, user, params))
    except (OSError, AuthConnError) as e:
        _lookup_error(name, user, client.path, e)
        return -1
    if isinstance(event, auth_master.Failure):
        sys.stderr.write(f"Error: {name} failed for {user}" +
                         (f": {event.reason}" if event.reason else "") + "\n")
        return -1
    if isinstance(event, auth_master.NotFound):
        text = f"{name}: user {user} doesn't exist\n"
        if show_field is None:
            out.write(text)
        else:
            sys.stderr.write(text)
        return 0
    fields: dict[str, str] = {}
    if isinstance(event, auth_master.UserReply | auth_master.PassReply):
        fields = dict(event.fields)
    updated = event.user if isinstance(event, auth_master.UserReply) else None
    if show_field is not None:
        if show_field in fields:
            out.write(fields[show_field] + "\n")
        return 1
    out.write(f"{'userdb' if userdb else 'passdb'}: {user}\n")
    if updated is not None:
        out.write(f"  {'user':<10}: {updated}\n")
    for key, value in fields.items():
        out.write(f"  {key:<10}: {value}\n")
    return 1


def cmd_auth_lookup(args: Sequence[str], cfg_get: object, base_dir: str, out: Output) -> int:
    parsed = _auth_args(args, "a:x:f:", "lookup")
    if parsed is None or not parsed[2]:
        sys.stderr.write("doveadm auth lookup [-a <userdb socket path>] [-x <auth info>] "
                         "[-f field] <user> [<user> [...]]\n")
        return EX_USAGE
    values, info, users = parsed
    assert callable(cfg_get)
    path = values.get("-a") or os.path.join(base_dir, str(cfg_get("auth_socket_path")))
    client = MasterClient(path)
    rc = 0
    try:
        for i, user in enumerate(users):
            if i:
                out.write("\n")
            ret = _user_input(client, user, info, show_field=values.get("-f"), userdb=False,
                              out=out)
            if ret < 0:
                rc = EX_TEMPFAIL
            elif ret == 0:
                rc = EX_NOUSER
    finally:
        client.close()
    return rc


def cmd_auth_cache_flush(args: Sequence[str], base_dir: str, out: Output) -> int:
    parsed = _auth_args(args, "a:", "flush")
    if parsed is None:
        return EX_USAGE
    values, _, users = parsed
    path = values.get("-a", os.path.join(base_dir, "auth-master"))
    client = MasterClient(path)
    try:
        event = client.ask(lambda i: client.codec.cache_flush(i, users))
    except OSError as e:
        sys.stderr.write(f"Error: auth-master: connect({path}) failed: {_strerror(e)}\n")
        sys.stderr.write("Error: Cache flush failed\n")
        return EX_TEMPFAIL
    except AuthConnError:
        sys.stderr.write("Error: Cache flush failed\n")
        return EX_TEMPFAIL
    finally:
        client.close()
    if not isinstance(event, auth_master.CacheFlushed):
        sys.stderr.write("Error: Cache flush failed\n")
        return EX_TEMPFAIL
    out.write(f"{event.count} cache entries flushed\n")
    return 0


# -- user -----------------------------------------------------------------------------------


def _mail_fields(cfg: Config, overrides: dict[str, str], *, requested: str, user: str,
                 fields: dict[str, str], service: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if requested != user:
        rows.append(("user", user))
    uid = fields.get("uid") or overrides.get("mail_uid") or str(cfg.get("mail_uid"))
    gid = fields.get("gid") or overrides.get("mail_gid") or str(cfg.get("mail_gid"))
    settings = dict(fields)
    if "mail" not in settings and "mail_location" in overrides:
        settings["mail"] = overrides["mail_location"]
    try:
        mu = resolve(cfg, user, settings, service)
        home, location = mu.home or "", mu.mail_location
    except MailUserError:
        home = fields.get("home", "")
        location = fields.get("mail") or str(cfg.get("mail_location"))
    rows += [("uid", uid), ("gid", gid), ("home", home), ("mail", location)]
    rows += [(k, v) for k, v in fields.items() if k not in ("uid", "gid", "home", "mail")]
    return rows


def cmd_user(args: Sequence[str], cfg: Config, overrides: dict[str, str], base_dir: str,
             out: Output) -> int:
    parsed = _auth_args(args, "a:x:f:e:u", "user")
    if parsed is None or not parsed[2]:
        sys.stderr.write("doveadm user [-a <userdb socket path>] [-x <auth info>] [-f field] "
                         "[-e <value>] [-u] <user mask> [<user mask> [...]]\n")
        return EX_USAGE
    values, info, masks = parsed
    show_field = values.get("-f")
    userdb_only = "-u" in values
    expand_field = values.get("-e")
    if expand_field is not None and userdb_only:
        sys.stderr.write("Error: -e can't be used with -u\n")
        return EX_USAGE
    if expand_field is not None and show_field is not None:
        sys.stderr.write("Error: -e can't be used with -f\n")
        return EX_USAGE
    socket_name = overrides.get("auth_socket_path") or str(cfg.get("auth_socket_path"))
    path = values.get("-a") or os.path.join(base_dir, socket_name)
    client = MasterClient(path)
    try:
        if any("*" in m or "?" in m for m in masks):
            mask = masks[0] if len(masks) == 1 else "*"
            try:
                params = dict(info.params)
                params["user"] = mask
                for name in client.list_users(params):
                    if any(fnmatch.fnmatchcase(name.lower(), m.lower()) for m in masks):
                        out.write(name + "\n")
            except (OSError, AuthConnError) as e:
                if isinstance(e, OSError):
                    sys.stderr.write(f"Error: auth-master: userdb list: connect({path}) "
                                     f"failed: {_strerror(e)}\n")
                sys.stderr.write("Fatal: user listing failed\n")
                return EX_TEMPFAIL
            return 0
        printer = None
        if not userdb_only and show_field is None and expand_field is None:
            printer = out.init("tab")
            printer.header("field")
            printer.header("value")
        rc = 0
        for i, user in enumerate(masks):
            if i:
                out.write("\n")
            if userdb_only:
                ret = _user_input(client, user, info, show_field=show_field, userdb=True,
                                  out=out)
            else:
                ret = _user_mail(client, cfg, overrides, user=user, info=info,
                                 show_field=show_field, expand_field=expand_field, out=out)
            if ret < 0:
                rc = EX_TEMPFAIL
            elif ret == 0:
                rc = EX_NOUSER
        return rc
    finally:
        client.close()


def _user_mail(client: MasterClient, cfg: Config, overrides: dict[str, str], *, user: str,
               info: AuthInfo, show_field: str | None, expand_field: str | None = None,
               out: Output) -> int:
    params = dict(info.params)
    try:
        event = client.ask(lambda i: client.codec.user(i, user, params))
    except (OSError, AuthConnError) as e:
        if isinstance(e, OSError):
            sys.stderr.write(f"doveadm({user})<{os.getpid()}><>: Error: auth-master: userdb "
                             f"lookup({user}): connect({client.path}) failed: "
                             f"{_strerror(e)}\n")
        else:
            sys.stderr.write(f"doveadm({user})<{os.getpid()}><>: Error: auth-master: userdb "
                             f"lookup({user}): {e}\n")
        return -1
    if isinstance(event, auth_master.Failure):
        sys.stderr.write(f"Error: userdb lookup failed for {user}: {event.reason or ''}\n")
        return -1
    if not isinstance(event, auth_master.UserReply):
        text = f"\nuserdb lookup: user {user} doesn't exist\n"
        if show_field is None and expand_field is None:
            out.write(text)
        else:
            sys.stderr.write(text)
        return 0
    rows = _mail_fields(cfg, overrides, requested=user, user=event.user,
                        fields=dict(event.fields), service=params.get("service", "doveadm"))
    if expand_field is not None:
        home = dict(rows).get("home") or None
        values = variables(event.user, home, params.get("service", "doveadm"))
        try:
            out.write(expand(expand_field, values,
                             fields={"userdb": dict(event.fields)}) + "\n")
        except VariableError as e:
            sys.stderr.write(f"Error: Failed to expand {expand_field}: {e}\n")
        return 1
    if show_field is None:
        assert out.printer is not None
        for key, value in rows:
            out.printer.values(key, value)
    else:
        for key, value in rows:
            if key == show_field:
                out.write(value + "\n")
    return 1
