"""Maildir storage in Dovecot's exact on-disk formats (uidlist, keywords, filenames, dotlocks)."""
