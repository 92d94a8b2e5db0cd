"""``cote-checkpassword-reply``: the program a checkpassword script runs on success, as
Dovecot's ``checkpassword-reply``.

The script has put the user's facts in its environment: ``USER`` (the user name, which may
rename the user), ``HOME``, and ``EXTRA`` naming more variables (``userdb_uid``,
``quota_rule`` …). This program writes them to fd 4 as TAB-separated ``key=value`` fields
(keys lower-cased, values escaped as in the auth protocols; ``userdb_uid``/``userdb_gid``
default to its own uid/gid) and exits 2 when ``AUTHORIZED=2`` (a lookup without a password),
0 otherwise.
"""

from __future__ import annotations

import os
import sys

from cote.auth.protocol.escape import join_line


def reply_fields(env: dict[str, str], uid: int, gid: int) -> list[str] | str:
    """The fields, or why they cannot be sent."""
    fields: list[str] = []
    if "USER" in env:
        fields.append(f"user={env['USER']}")
    if "HOME" in env:
        fields.append(f"userdb_home={env['HOME']}")
    found: set[str] = set()
    for name in env.get("EXTRA", "").split(" "):
        if name and name in env:
            key = name.lower()
            found.add(key)
            fields.append(f"{key}={env[name]}")
    if "userdb_uid" not in found:
        fields.append(f"userdb_uid={uid}")
    if "userdb_gid" not in found:
        fields.append(f"userdb_gid={gid}")
    return fields


def main() -> int:
    fields = reply_fields(dict(os.environ), os.getuid(), os.getgid())
    data = join_line(fields)[:-1] + b"\t"  # Dovecot's reply ends each field with a TAB
    try:
        os.write(4, data)
    except OSError as e:
        print(f"checkpassword: write(4) failed: {e}", file=sys.stderr)
        return 111
    return 2 if os.environ.get("AUTHORIZED") == "2" else 0


if __name__ == "__main__":
    sys.exit(main())
