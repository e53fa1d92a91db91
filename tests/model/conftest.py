"""Hypothesis profiles for the model-based tests.

``model-default`` (50 examples) runs on every ``pytest``; ``ci`` (2000 examples) is chosen
with ``HYPOTHESIS_PROFILE=ci``. Each example is a short program (``stateful_step_count``)
on a tiny tree, so even the ci profile stays within a CI budget. No deadline: a sync touches
the disk and SQLite, whose timing varies on a shared machine.

The profiles are registered here but not loaded globally, so they change nothing for
Hypothesis tests elsewhere; the model tests pick theirs with :func:`model_settings`.
The ``model_root`` fixture (a folder in RAM) is shared by every test of this folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

from tests.integration.helpers import ram_folder

DEFAULT_PROFILE = "model-default"

settings.register_profile(
    DEFAULT_PROFILE,
    max_examples=50,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=2000,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)


def model_settings() -> settings:
    """The profile named by ``$HYPOTHESIS_PROFILE`` (``model-default`` when unset or unknown)."""
    try:
        return settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", DEFAULT_PROFILE))
    except InvalidArgument:
        return settings.get_profile(DEFAULT_PROFILE)


@pytest.fixture
def model_root(tmp_path: Path) -> Iterator[Path]:
    """A folder in RAM when there is one (``/dev/shm``, or ``$SYNCD_MODEL_TMP``): every write
    the engine makes is fsynced, which on a disk costs more than the whole rest of an example.
    Durability across power loss is not what this test checks (crashes here are in-process)."""
    with ram_folder(tmp_path, "SYNCD_MODEL_TMP", "syncd-model-") as root:
        yield root
