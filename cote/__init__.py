"""cote: a mail access server that is a drop-in replacement for Dovecot.

This package root holds what every process shares: the config language and settings
(``cote.config``), mail-variable expansion, logging and IPC helpers, and the command-line
entry points (``cote.cli``). The process subpackages are mapped from the repository's
top-level folders: ``cote.master``, ``cote.login``, ``cote.auth``, ``cote.mailproc``,
``cote.storage``.
"""

__version__ = "0.1.0"
# The Dovecot release whose configuration language and defaults cote follows.
DOVECOT_COMPAT_VERSION = "2.3.19.1"
