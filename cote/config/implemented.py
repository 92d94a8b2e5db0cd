"""The settings cote implements: one frozenset, extended by whoever implements a setting.

A setting Dovecot knows but that is missing here is still accepted; ``load`` reports it in
``Config.warnings`` (and ``coteconf`` prints it) so nothing is silently ignored. Names are global
settings or ``section/key`` for keys inside sections (``service/process_limit``,
``inet_listener/port``, ``passdb/driver``...).
"""

from __future__ import annotations

IMPLEMENTED: frozenset[str] = frozenset({
    # paths and identity
    "base_dir", "state_dir", "instance_name", "libexec_dir", "listen", "protocols",
    "hostname", "shutdown_clients", "version_ignore",
    # users and limits for services
    "default_internal_user", "default_internal_group", "default_login_user",
    "default_client_limit", "default_process_limit", "default_vsz_limit", "default_idle_kill",
    "first_valid_uid", "last_valid_uid", "first_valid_gid", "last_valid_gid",
    "import_environment", "verbose_proctitle",
    # logging
    "log_path", "info_log_path", "debug_log_path", "syslog_facility", "log_timestamp",
    "login_log_format", "login_log_format_elements", "mail_log_prefix",
    # login
    "login_greeting", "login_trusted_networks", "disable_plaintext_auth",
    "mail_max_userip_connections",
    "ssl", "ssl_cert", "ssl_key", "ssl_key_password", "ssl_ca", "ssl_min_protocol",
    "ssl_cipher_list", "ssl_prefer_server_ciphers", "ssl_dh", "verbose_ssl",
    "ssl_curve_list", "ssl_verify_client_cert", "ssl_require_crl", "ssl_cert_username_field",
    # service { } and listeners
    "service/chroot", "service/client_limit", "service/drop_priv_before_exec",
    "service/executable", "service/extra_groups", "service/group", "service/idle_kill",
    "service/privileged_group", "service/process_limit", "service/process_min_avail",
    "service/protocol", "service/service_count", "service/type", "service/user",
    "service/vsz_limit",
    "inet_listener/address", "inet_listener/port", "inet_listener/ssl",
    "inet_listener/reuse_port", "inet_listener/haproxy",
    "unix_listener/mode", "unix_listener/user", "unix_listener/group",
    "fifo_listener/mode", "fifo_listener/user", "fifo_listener/group",
    "ssl_options",
    # mail processes: who the user becomes and where the mail is
    "mail_location", "mail_uid", "mail_gid", "mail_home", "mail_access_groups", "mail_fsync",
    # imap hibernation (mailproc/imap/hibernate.py)
    "imap_hibernate_timeout",
    # pop3
    "pop3_uidl_format", "pop3_delete_type", "pop3_deleted_flag", "pop3_no_flag_updates",
    "pop3_enable_last", "pop3_logout_format", "pop3_client_workarounds",
    "pop3_lock_session", "pop3_save_uidl", "pop3_reuse_xuidl", "pop3_fast_size_lookups",
    "pop3_uidl_duplicates",
    # managesieve (plugin settings read: sieve, sieve_quota_max_scripts,
    # sieve_quota_max_storage, sieve_max_script_size, sieve_max_redirects)
    "managesieve_implementation_string", "managesieve_sieve_capability",
    "managesieve_notify_capability", "managesieve_logout_format",
    "managesieve_max_compile_errors", "managesieve_max_line_length",
    # delivery (lmtp, cote-lda)
    "recipient_delimiter", "lmtp_add_received_header", "quota_full_tempfail",
    "lmtp_save_to_detail_mailbox", "lmtp_hdr_delivery_address", "lmtp_rcpt_check_quota",
    "deliver_log_format", "lda_mailbox_autocreate", "lda_mailbox_autosubscribe",
    "lmtp_user_concurrency_limit",
    "lda_original_recipient_header",
    "lmtp_proxy",
    "postmaster_address", "rejection_subject", "rejection_reason", "sendmail_path",
    "auth_socket_path",
    # auth daemon
    "auth_mechanisms", "auth_verbose", "auth_failure_delay", "auth_username_format",
    "auth_username_chars", "auth_username_translation", "auth_default_realm", "auth_realms",
    "auth_anonymous_username", "auth_cache_size", "auth_cache_ttl", "auth_cache_negative_ttl",
    "auth_master_user_separator", "auth_ssl_require_client_cert", "auth_ssl_username_from_cert",
    "auth_verbose_passwords", "auth_debug", "auth_debug_passwords",
    # login part 2 (proxying, PROXY protocol, limits)
    "haproxy_trusted_networks", "haproxy_timeout", "login_proxy_max_disconnect_delay",
    "passdb/driver", "passdb/args", "passdb/default_fields", "passdb/override_fields",
    "passdb/deny", "passdb/skip", "passdb/result_success", "passdb/result_failure",
    "passdb/result_internalfail", "passdb/master", "passdb/pass",
    "userdb/driver", "userdb/args", "userdb/default_fields", "userdb/override_fields",
    "userdb/skip", "userdb/result_success", "userdb/result_failure", "userdb/result_internalfail",
})


def is_implemented(name: str) -> bool:
    return name in IMPLEMENTED
