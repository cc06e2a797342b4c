"""Fixtures of the CLI tests (helpers to import are in ``cli_helpers.py``)."""

import pytest

from patchcrypt import Key


@pytest.fixture
def key(tmp_path):
    """A fresh owner's key file."""
    path = tmp_path / "owner.key"
    Key.generate().save(path)
    return path
