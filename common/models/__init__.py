"""Shared baselines used by several papers, and the segregation interface SRI and LOM consume."""
from common.models.genesis_v2 import GenesisV2, GenesisV2Config
from common.models.segregation import Segregation, Segregator
from common.models.slot_attention import SlotAttentionAutoEncoder, SlotAttentionConfig

__all__ = ["GenesisV2", "GenesisV2Config", "Segregation", "Segregator", "SlotAttentionAutoEncoder",
           "SlotAttentionConfig"]
