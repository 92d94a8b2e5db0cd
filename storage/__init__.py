"""Mail storage: Maildir and mbox in Dovecot's formats, namespaces, index, quota."""
