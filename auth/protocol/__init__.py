"""Dovecot's auth-client and auth-master protocols as sans-IO codecs (both ends of each).

- ``auth_client.ServerConnection``: the auth daemon's end of a login/Postfix connection.
  Write ``handshake(...)`` on accept, ``feed(bytes)`` → ``ClientVersion``/``ClientPid``/
  ``AuthBegin``/``AuthContinue``/``AuthCancel`` events, ``Reply`` (write it) and
  ``Disconnect`` (log and close); answer with ``cont``/``ok``/``fail``.
- ``auth_client.ClientConnection``: a login process's end (``hello``, ``auth``, ``cont``,
  ``cancel``; events ``ServerHandshake``/``Continue``/``Success``/``Failure``).
- ``auth_master.ServerConnection`` / ``ClientConnection``: the same for auth-master and
  auth-userdb (``USER``, ``PASS``, ``LIST``, ``REQUEST``, ``CACHE-FLUSH``).
- ``escape``: the 0x01 tab-escaping; ``lines``: the bounded incremental line splitter.
"""
