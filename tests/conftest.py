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


@pytest.fixture
def train_two_steps(tmp_path):
    """train(model, size) runs two steps of the shared Trainer (batch 4 of 8 random size x size images) into
    tmp_path/run: the models' round-trip tests start from a trained state (GECO, codebooks)."""
    def train(model, size: int):
        from common.train import TrainConfig, Trainer
        images = (torch.rand(8, size, size, 3) * 255).to(torch.uint8)
        config = TrainConfig(steps=2, batch_size=4, lr=1e-4, clip="none", save_every=2, log_every=1)
        return Trainer(model, images, config, tmp_path / "run").fit()
    return train
