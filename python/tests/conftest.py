"""Shared fixtures: the repository's paths, and the `ascend-cold` CLI for parity tests.

The package under test is the installed one (scripts/test-python builds ./python into its venv);
these tests never import from the source tree.
"""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def cli():
    """The `ascend-cold` binary: $ASCEND_COLD_CLI, else the workspace's release build."""
    path = pathlib.Path(os.environ.get("ASCEND_COLD_CLI", ROOT / "target" / "release" / "ascend-cold"))
    if not path.is_file():
        pytest.skip(f"no ascend-cold binary at {path} (cargo build --release --bin ascend-cold)")
    return path
