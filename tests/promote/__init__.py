"""The promotion tests, a package so that its conftest.py is imported as promote.conftest and does not take the
name ``conftest`` from tests/conftest.py, which test modules import (``from conftest import REPO``)."""
