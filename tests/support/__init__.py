"""Helpers shared by tests and benchmarks: ports, temp dirs, users, throwaway servers."""
