"""The serving tests, a package so that its conftest.py is imported as serve.conftest and does not take the
name ``conftest`` from tests/conftest.py, which test modules import (``from conftest import free_port``)."""
