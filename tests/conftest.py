"""Fixtures shared across the suite: real servers started and stopped by the tests."""

pytest_plugins = ["tests.webdav.fixtures", "tests.storj_network.fixture"]
