"""Test-suite set-up: one torch thread (2 threads are 10-200x slower under any other load here)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/agreement.py is shared with tests/test_tasks.py
    sys.path.insert(0, str(ROOT))
EXAMPLES = sorted((ROOT / "examples").glob("*.rule"))


@pytest.fixture()
def generator():
    """A tiny random reasoner (3 sampling steps): the runtime's tests run on it in seconds."""
    from helpers import tiny_model

    from ruledsl.runtime.generators import ReasonerGenerator

    return ReasonerGenerator(model=tiny_model(), steps=3)


@pytest.fixture()
def condition():
    from ruledsl.runtime.generators import Condition

    return Condition(torch.rand(3, 32, 32), "prompt", "maze", frames=4)
