"""Package discovery for cote's layout.

Each top-level code folder (master/, auth/, ...) is the subpackage ``cote.<folder>`` through
``package-dir`` in pyproject.toml; setuptools cannot discover packages below remapped roots by
itself, so this lists every folder with an ``__init__.py`` under each root.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {"cote": "cote", "cote.master": "master", "cote.login": "login", "cote.auth": "auth",
         "cote.mailproc": "mailproc", "cote.storage": "storage"}


def discover() -> list[str]:
    packages = []
    for package, folder in ROOTS.items():
        for init in sorted(Path(folder).rglob("__init__.py")):
            rel = init.parent.relative_to(folder).parts
            packages.append(".".join((package, *rel)))
    return packages


setup(packages=discover())
