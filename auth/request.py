"""One authentication or lookup as the passdb/userdb chain sees it.

Holds the names (as given, and after ``auth_username_format``), the connection facts every
``%`` variable can name, and the fields each database adds: passdb extra fields (sent with
``OK``), userdb fields (uid, gid, home, mail, quota_rule …, including ``userdb_*`` prefetch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cote.variables import VariableError, compile_template, user_values


@dataclass
class AuthRequest:
    user: str  # after auth_username_format: what databases look up
    original_user: str = ""
    service: str = ""
    local_ip: str = ""
    remote_ip: str = ""
    local_port: str = ""
    remote_port: str = ""
    session: str = ""
    mechanism: str = ""
    secured: bool = False
    passdb_fields: dict[str, str | None] = field(default_factory=dict)  # None: a bare key
    userdb_fields: dict[str, str | None] = field(default_factory=dict)
    master_user: str | None = None
    master_lookup: bool = False  # the master passdbs are checking the master user now
    # From the login process: the TLS client certificate was valid (``valid-client-cert``)
    # and the ``ssl_cert_username_field`` it carried (``cert_username=``).
    valid_client_cert: bool = False
    cert_username: str | None = None
    cert_login: bool = False  # the certificate's name replaced the mechanism's
    show_original: bool = False  # send original_user= even when it equals user=
    credentials_scheme: str = ""  # what a mechanism asked the passdb for (CRAM-MD5 …)
    authenticated: bool = False
    # The plaintext password while the request runs, for passdbs that proxy (Dovecot sends it
    # on as pass= so the login process can log in to the backend); never kept afterwards.
    password: bytes | None = None

    def values(self, password: str | None = None) -> dict[str, str | None]:
        """``%`` variables for templates (args paths, default/override fields, queries)."""
        values = user_values(self.user)
        orig = user_values(self.original_user or self.user)
        values.update({
            "service": self.service, "local_ip": self.local_ip, "remote_ip": self.remote_ip,
            "local_port": self.local_port, "remote_port": self.remote_port,
            "session": self.session, "mechanism": self.mechanism,
            "secured": "secured" if self.secured else "", "password": password,
            "original_user": orig["user"], "original_username": orig["username"],
            "original_domain": orig["domain"], "master_user": self.master_user,
            "login_user": self.original_user or self.user,
            "home": self.userdb_fields.get("home"),
        })
        return values

    def expand(self, template: str, password: str | None = None) -> str:
        fields = {"passdb": {k: v or "" for k, v in self.passdb_fields.items()},
                  "userdb": {k: v or "" for k, v in self.userdb_fields.items()}}
        return compile_template(template).expand(self.values(password), fields=fields)

    def log_name(self) -> str:
        """``user,rip,<session>`` as Dovecot's auth_verbose lines show a request."""
        parts = [self.user, self.remote_ip] if self.remote_ip else [self.user]
        if self.master_lookup:
            parts.append("master")
        if self.session:
            parts.append(f"<{self.session}>")
        return ",".join(parts)


def parse_fields(text: str, request: AuthRequest | None = None) -> dict[str, str | None]:
    """``key=value key2`` (a bare key has the value None and stays bare on the wire), with
    ``%`` variables expanded per request."""
    fields: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if request is not None and "%" in value:
            try:
                value = request.expand(value)
            except VariableError:
                pass
        fields[key] = value if eq else None
    return fields


def apply_fields(target: dict[str, str | None], default: str, override: str,
                 request: AuthRequest, found: Mapping[str, str | None]) -> None:
    """default_fields (when the database did not set a field), the database's own fields,
    then override_fields, into ``target``; ``userdb_`` fields in a passdb go to userdb."""
    merged = parse_fields(default, request)
    merged.update(found)
    merged.update(parse_fields(override, request))
    target.update(merged)
