import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    # Accelerate keeps one state per process; tests build Accelerators with different precisions.
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)
