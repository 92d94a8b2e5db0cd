"""The master process: config, listeners, supervision of services, logging, signals."""
