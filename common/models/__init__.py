"""Shared baselines used by several papers."""
from common.models.slot_attention import SlotAttentionAutoEncoder, SlotAttentionConfig

__all__ = ["SlotAttentionAutoEncoder", "SlotAttentionConfig"]
