"""A package, so that this folder's conftest.py loads as ``fetch.conftest``: without it, pytest would load it as
``conftest`` and the ``from conftest import ...`` of every test (meaning tests/conftest.py) would find it instead."""
