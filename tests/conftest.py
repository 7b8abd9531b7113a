"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Small models on a shared 2-core machine: intra-op threads only add
    synchronisation. Test modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
