"""mbox storage in Dovecot's format: ``MboxList`` (names, files) and ``MboxMailbox``."""
