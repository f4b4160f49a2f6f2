"""Helpers the test modules share; the shared fixtures live in tests/conftest.py."""
