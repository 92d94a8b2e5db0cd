"""Side-by-side benchmarks of cote and Debian's Dovecot (run as ``python -m bench``).

Not part of the installed ``cote`` package: a plain top-level package that starts both servers
on the same generated store, drives them with one load generator and prints both figures and
their ratio. See bench/README.md.
"""
