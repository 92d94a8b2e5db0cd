"""Who a mail process becomes: uid, gid, home and mail location from userdb and config.

Userdb fields win over the config (``uid``/``gid``/``home``/``mail``), as in Dovecot; the
``mail_uid``/``mail_gid``/``mail_home``/``mail_location`` settings fill the gaps, and
``first_valid_uid``… guard against a userdb handing out root or system accounts. Privileges are
dropped before any mail is touched and can never be regained.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass

from cote.config import Config
from cote.variables import VariableError, expand, user_values


class MailUserError(Exception):
    """The user cannot be served (bad uid/gid, no mail location); the text is for the log."""


@dataclass(frozen=True, slots=True)
class MailUser:
    user: str
    uid: int
    gid: int
    home: str | None
    mail_location: str
    fields: Mapping[str, str]


def _uid(value: str) -> int:
    try:
        return int(value) if value.isdigit() else pwd.getpwnam(value).pw_uid
    except KeyError as e:
        raise MailUserError(f"Unknown UID: {value}") from e


def _gid(value: str) -> int:
    try:
        return int(value) if value.isdigit() else grp.getgrnam(value).gr_gid
    except KeyError as e:
        raise MailUserError(f"Unknown GID: {value}") from e


def variables(user: str, home: str | None, service: str,
              extra: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    values = user_values(user)
    values.update({"home": home, "service": service})
    values.update(extra or {})
    return values


def resolve(cfg: Config, user: str, fields: Mapping[str, str], service: str,
            extra: Mapping[str, str | None] | None = None) -> MailUser:
    uid_text = fields.get("uid") or str(cfg.get("mail_uid"))
    gid_text = fields.get("gid") or str(cfg.get("mail_gid"))
    if not uid_text:
        raise MailUserError("Mail access for users with UID 0 not permitted "
                            "(set mail_uid or return uid from userdb)")
    uid = _uid(uid_text)
    gid = _gid(gid_text) if gid_text else pwd.getpwuid(uid).pw_gid
    first, last = int(cfg.get("first_valid_uid")), int(cfg.get("last_valid_uid"))
    if uid == 0 or uid < first or (last and uid > last):
        raise MailUserError(f"Mail access for users with UID {uid} not permitted "
                            f"(see first_valid_uid in config file, uid from userdb lookup).")
    first_g, last_g = int(cfg.get("first_valid_gid")), int(cfg.get("last_valid_gid"))
    if gid < first_g or (last_g and gid > last_g):
        raise MailUserError(f"Mail access for users with GID {gid} not permitted "
                            f"(see first_valid_gid in config file, gid from userdb lookup).")
    try:
        home = fields.get("home") or (expand(str(cfg.get("mail_home")),
                                             variables(user, None, service, extra))
                                      if cfg.get("mail_home") else None)
        template = fields.get("mail") or str(cfg.get("mail_location"))
        location = expand(template, variables(user, home, service, extra))
    except VariableError as e:
        raise MailUserError(f"mail_location: {e}") from e
    if not location:
        raise MailUserError("mail_location not set and autodetection failed")
    return MailUser(user, uid, gid, home, location, dict(fields))


class _Became:
    """The uid and gid this process switched to from root: for good, so with
    ``service_count != 1`` it serves only users who have the same ones."""

    ids: tuple[int, int] | None = None


def has_become_a_user() -> bool:
    """Whether this process gave up root for a user's uid (it serves a further client only
    if that client's user has the same uid and gid)."""
    return _Became.ids is not None


def became_another(user: MailUser) -> bool:
    """Whether this process already became a uid or gid other than ``user``'s."""
    return _Became.ids is not None and _Became.ids != (user.uid, user.gid)


def drop_privileges(user: MailUser, cfg: Config) -> None:
    """Become the mail user for good (setgroups, setgid, setuid), if running as root."""
    if _Became.ids is not None:  # a process serving its next client (service_count != 1)
        if became_another(user):
            uid, gid = _Became.ids
            raise MailUserError(f"Can't become uid {user.uid} gid {user.gid} (this process "
                                f"is uid {uid} gid {gid})")
        return
    if os.getuid() != 0:
        if os.getuid() != user.uid:
            raise MailUserError(f"Can't become uid {user.uid} (running as {os.getuid()})")
        return
    groups = [user.gid]
    for name in str(cfg.get("mail_access_groups")).replace(",", " ").split():
        groups.append(_gid(name))
    # as Dovecot's restrict_access: the supplementary groups the service was given (its
    # extra_groups, e.g. imap's $default_internal_group for the imap-hibernate socket) stay
    groups += [g for g in os.getgroups() if g != 0 and g not in groups]
    os.setgroups(groups)
    os.setgid(user.gid)
    os.setuid(user.uid)
    if os.getuid() != user.uid or os.geteuid() != user.uid:
        raise MailUserError("setuid failed to drop privileges")
    _Became.ids = (user.uid, user.gid)
