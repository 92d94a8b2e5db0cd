"""The auth daemon: Dovecot auth-client and auth-master protocols, mechanisms, schemes, drivers."""
