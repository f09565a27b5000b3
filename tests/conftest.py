import os

import pytest
import torch

# CI machines have 2 cores; developers running several suites at once set SOUNDLM_TEST_THREADS=1.
torch.set_num_threads(int(os.environ.get("SOUNDLM_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
