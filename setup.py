"""Packaging shim: the metadata lives in setup.cfg.

``twisted.plugins`` has no ``__init__.py`` (twistd requires that), so package
discovery cannot find it; it is listed here by name, which makes a plain
``pip install .`` install ``twisted/plugins/pokan_plugin.py`` and so
``twistd pokan``.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["pokan", "pokan.*"]), "twisted.plugins"])
