"""Fixtures for the fetch tests: local stand-ins of the hub and of the download sites (tests/fakes/hub_stub.py),
one of each per test, the hub's with a clean token environment and its own staging directory."""

from __future__ import annotations

import pytest
from fakes.hub_stub import FileStub, HubStub


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    server = HubStub().start()
    yield server
    server.stop()


@pytest.fixture
def site():
    server = FileStub().start()
    yield server
    server.stop()
