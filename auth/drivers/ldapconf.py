"""``dovecot-ldap.conf.ext`` as cote reads it: the settings, and the ``*_attrs`` mappings from
LDAP attributes to passdb/userdb fields.

A mapping is a comma-separated list of ``ldapAttr=field`` (the attribute's value),
``ldapAttr=field=template`` (``%$`` is the attribute's value), ``=field=template`` (a field
built from ``%{ldap:attr}`` / ``%{ldap:attr:default}`` / ``%{ldap_multi:attr[:sep]}`` and the
request's ``%`` variables) or a bare ``ldapAttr`` (a field of the same name). Values put
into filters are escaped per RFC 4515, into DNs per RFC 4514.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cote.auth.drivers.base import DriverError
from cote.auth.drivers.extconf import read
from cote.auth.request import AuthRequest

SETTINGS = {
    "hosts": "", "uris": "", "dn": "", "dnpass": "", "auth_bind": "no",
    "auth_bind_userdn": "", "tls": "no", "sasl_bind": "no", "sasl_mech": "",
    "sasl_realm": "", "sasl_authz_id": "", "tls_ca_cert_file": "", "tls_ca_cert_dir": "",
    "tls_cert_file": "", "tls_key_file": "", "tls_cipher_suite": "", "tls_require_cert": "",
    "deref": "never", "scope": "subtree", "base": "", "ldap_version": "3",
    "debug_level": "0", "ldaprc_path": "",
    "user_attrs": "homeDirectory=home,uidNumber=uid,gidNumber=gid",
    "user_filter": "(&(objectClass=posixAccount)(uid=%u))",
    "pass_attrs": "userPassword=password",
    "pass_filter": "(&(objectClass=posixAccount)(uid=%u))",
    "iterate_attrs": "uid=user", "iterate_filter": "(objectClass=posixAccount)",
    "default_pass_scheme": "CRYPT", "userdb_warning_disable": "no", "blocking": "no",
}

Entry = dict[str, list[str]]  # attribute name (lower case) -> values

_LDAP_VAR = re.compile(r"%\{ldap(_multi)?:([^}:]*)(?::([^}]*))?\}")


def is_yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "y", "1", "true")


def escape_filter(value: str) -> str:
    out = []
    for c in value:
        out.append(f"\\{ord(c):02x}" if c in "*()\\\0" else c)
    return "".join(out)


def escape_dn(value: str) -> str:
    out = []
    for i, c in enumerate(value):
        if c in ',+"\\<>;=' or (c == "#" and i == 0) or (c == " " and i in (0, len(value) - 1)):
            out.append("\\" + c)
        elif c == "\0":
            out.append("\\00")
        else:
            out.append(c)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class AttrMap:
    attr: str  # "" for a pure template
    field: str
    template: str | None

    def value(self, entry: Entry, request: AuthRequest) -> str | None:
        if self.template is None:
            values = entry.get(self.attr.lower())
            return values[0] if values else None
        if self.attr and self.attr.lower() not in entry:
            return None
        own = entry.get(self.attr.lower(), [""])[0] if self.attr else ""

        def ldap_var(m: re.Match[str]) -> str:
            values = entry.get(m.group(2).lower())
            if m.group(1):  # ldap_multi: attr[:separator[:default]]
                sep, _, default = (m.group(3) or ",").partition(":")
                text = sep.join(values) if values else default
            else:
                text = values[0] if values else (m.group(3) or "")
            return text.replace("%", "%%")

        text = _LDAP_VAR.sub(ldap_var, self.template).replace("%$", own.replace("%", "%%"))
        return request.expand(text)


def parse_attrs(text: str) -> list[AttrMap]:
    maps = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        attr, eq, rest = item.partition("=")
        if not eq:
            maps.append(AttrMap(attr, attr, None))
            continue
        field, eq2, template = rest.partition("=")
        if not field:
            raise DriverError(f"ldap: invalid attribute mapping {item!r}")
        maps.append(AttrMap(attr.strip(), field.strip(), template if eq2 else None))
    return maps


def wanted_attrs(maps: list[AttrMap]) -> list[str]:
    names = {m.attr for m in maps if m.attr}
    for m in maps:
        if m.template:
            names.update(x.group(2) for x in _LDAP_VAR.finditer(m.template))
    return sorted(names)


def load(path: str) -> dict[str, str]:
    settings = dict(SETTINGS)
    settings.update(read(path, SETTINGS, kind="ldap"))
    if not settings["base"]:
        raise DriverError(f"ldap: {path}: No base given")
    if not (settings["hosts"] or settings["uris"]):
        raise DriverError(f"ldap: {path}: No LDAP hosts or uris given")
    if settings["scope"] not in ("base", "onelevel", "subtree"):
        raise DriverError(f"ldap: {path}: Unknown scope option '{settings['scope']}'")
    if settings["deref"] not in ("never", "searching", "finding", "always"):
        raise DriverError(f"ldap: {path}: Unknown deref option '{settings['deref']}'")
    return settings
