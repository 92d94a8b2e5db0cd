"""Dovecot's auth-client and auth-master protocols as sans-IO codecs (both ends of each)."""
