"""The one Accelerate training loop, its schedules, logs and experiment configs."""
from common.train.loop import StepSampler, TrainConfig, Trainer, TrainingDiverged, TrainState
from common.train.schedules import warmup_decay

__all__ = ["StepSampler", "TrainConfig", "Trainer", "TrainingDiverged", "TrainState", "warmup_decay"]
