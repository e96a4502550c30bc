"""Shared fixtures. Everything is generated on the fly; nothing is downloaded."""

import os

# Tests never reach a model hub: transformers/huggingface_hub fail fast instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded generator; tests never seed globally."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """The reduced demo (``run_demo(size="small")``), run once per session for every test that reads it."""
    from sae_eeg.pipeline.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "out"
    return run_demo(out, size="small", scheduler="local", echo=lambda line: None)
