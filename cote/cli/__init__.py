"""Command-line entry points: ``cote`` (master), ``coteadm`` (admin), ``coteconf`` (config)."""
