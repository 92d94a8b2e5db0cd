"""A small ctypes binding to Linux-PAM: one call that authenticates a user the way Dovecot's
``passdb pam`` does.

python-pam cannot set ``PAM_RHOST``/``PAM_RUSER`` nor answer conversations with several
prompts, so this binds libpam directly: every echo-on/echo-off prompt is answered with the
password, error/info messages are kept (``failure_show_msg``), PAM's own failure delay is
replaced by a no-op (the auth daemon has ``auth_failure_delay``), then ``pam_acct_mgmt`` and,
when asked, ``pam_setcred`` and ``pam_open_session``/``pam_close_session``. Blocking: call it
from an auth-worker process, never from an event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any

PAM_SUCCESS = 0
PAM_SYSTEM_ERR = 4
PAM_BUF_ERR = 5
PAM_PERM_DENIED = 6
PAM_AUTH_ERR = 7
PAM_USER_UNKNOWN = 10
PAM_NEW_AUTHTOK_REQD = 12
PAM_ACCT_EXPIRED = 13
PAM_CONV_ERR = 19
PAM_ABORT = 26

PAM_USER = 2
PAM_TTY = 3
PAM_RHOST = 4
PAM_CONV = 5
PAM_RUSER = 8
PAM_FAIL_DELAY = 10

PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_ERROR_MSG = 3
PAM_TEXT_INFO = 4

PAM_ESTABLISH_CRED = 0x0002
PAM_DELETE_CRED = 0x0004


class PamMessage(ctypes.Structure):
    _fields_ = (("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p))


class PamResponse(ctypes.Structure):
    _fields_ = (("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int))


ConvFunc = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int,
                            ctypes.POINTER(ctypes.POINTER(PamMessage)),
                            ctypes.POINTER(ctypes.POINTER(PamResponse)), ctypes.c_void_p)
DelayFunc = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


class PamConv(ctypes.Structure):
    _fields_ = (("conv", ConvFunc), ("appdata_ptr", ctypes.c_void_p))


_lib: Any = None
_libc: Any = None


def _libs() -> tuple[Any, Any]:
    global _lib, _libc  # loaded once per worker process
    if _lib is None:
        lib = ctypes.CDLL(ctypes.util.find_library("pam") or "libpam.so.0")
        libc = ctypes.CDLL(None)
        libc.calloc.restype = ctypes.c_void_p
        libc.calloc.argtypes = (ctypes.c_size_t, ctypes.c_size_t)
        libc.strdup.restype = ctypes.c_void_p
        libc.strdup.argtypes = (ctypes.c_char_p,)
        lib.pam_start.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(PamConv),
                                  ctypes.POINTER(ctypes.c_void_p))
        lib.pam_end.argtypes = (ctypes.c_void_p, ctypes.c_int)
        lib.pam_set_item.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
        lib.pam_get_item.argtypes = (ctypes.c_void_p, ctypes.c_int,
                                     ctypes.POINTER(ctypes.c_void_p))
        for name in ("pam_authenticate", "pam_acct_mgmt", "pam_setcred", "pam_open_session",
                     "pam_close_session"):
            getattr(lib, name).argtypes = (ctypes.c_void_p, ctypes.c_int)
        lib.pam_strerror.argtypes = (ctypes.c_void_p, ctypes.c_int)
        lib.pam_strerror.restype = ctypes.c_char_p
        _lib, _libc = lib, libc
    return _lib, _libc


@dataclass(frozen=True, slots=True)
class PamOutcome:
    status: int  # PAM_SUCCESS or the failing call's PAM error
    step: str  # the call that failed ("" on success)
    user: str  # PAM_USER afterwards (a module may rename the user)
    error: str  # pam_strerror text
    messages: tuple[str, ...]  # error/info messages the modules sent


def _no_delay_hook(_retval: int, _usec: int, _appdata: int | None) -> None:
    """PAM_FAIL_DELAY hook: the auth daemon delays failures itself."""


_no_delay = DelayFunc(_no_delay_hook)


def authenticate(service: str, user: str, password: str, *, rhost: str = "",
                 ruser: str = "", session: bool = False, setcred: bool = False) -> PamOutcome:
    lib, libc = _libs()
    secret = password.encode("utf-8", "surrogateescape")
    messages: list[str] = []

    def conv(count: int, msgs: Any, resp: Any, _appdata: int | None) -> int:
        array = libc.calloc(count, ctypes.sizeof(PamResponse))
        if not array:
            return PAM_BUF_ERR
        responses = ctypes.cast(array, ctypes.POINTER(PamResponse))
        for i in range(count):
            msg = msgs[i].contents
            if msg.msg_style in (PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON):
                responses[i].resp = libc.strdup(secret)
            elif msg.msg_style in (PAM_ERROR_MSG, PAM_TEXT_INFO) and msg.msg:
                messages.append(msg.msg.decode("utf-8", "replace"))
        resp[0] = responses
        return PAM_SUCCESS

    callback = ConvFunc(conv)
    pam_conv = PamConv(callback, None)
    handle = ctypes.c_void_p()
    status = lib.pam_start(service.encode(), user.encode("utf-8", "surrogateescape"),
                           ctypes.byref(pam_conv), ctypes.byref(handle))
    if status != PAM_SUCCESS:
        return PamOutcome(status, "pam_start", user, f"pam_start() failed: {status}", ())
    step = ""
    final_user = user
    try:
        lib.pam_set_item(handle, PAM_FAIL_DELAY, ctypes.cast(_no_delay, ctypes.c_void_p))
        for kind, value in ((PAM_RHOST, rhost), (PAM_RUSER, ruser), (PAM_TTY, service)):
            if value:
                lib.pam_set_item(handle, kind, ctypes.c_char_p(value.encode()))
        steps: list[tuple[str, Any]] = [("pam_authenticate", lambda: lib.pam_authenticate(
            handle, 0)), ("pam_acct_mgmt", lambda: lib.pam_acct_mgmt(handle, 0))]
        if setcred:
            steps.append(("pam_setcred", lambda: lib.pam_setcred(handle, PAM_ESTABLISH_CRED)))
        if session:
            steps.append(("pam_open_session", lambda: lib.pam_open_session(handle, 0)))
        for name, call in steps:
            status = call()
            if status != PAM_SUCCESS:
                step = name
                break
        else:
            step = ""
            if session:
                lib.pam_close_session(handle, 0)
            if setcred:
                lib.pam_setcred(handle, PAM_DELETE_CRED)
        item = ctypes.c_void_p()
        if lib.pam_get_item(handle, PAM_USER, ctypes.byref(item)) == PAM_SUCCESS and item:
            final_user = (ctypes.cast(item, ctypes.c_char_p).value or b"").decode(
                "utf-8", "surrogateescape") or user
        error = (lib.pam_strerror(handle, status) or b"").decode("utf-8", "replace")
    finally:
        lib.pam_end(handle, status)
    return PamOutcome(status, step, final_user, error, tuple(messages))
