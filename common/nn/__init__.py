"""Building blocks shared by the papers."""
from common.nn.decoders import SpatialBroadcastDecoder, split_rgb_mask
from common.nn.encoders import MLP, ConvEncoder, flatten_spatial
from common.nn.position import PositionEmbed, linear_grid, ramp_grid
from common.nn.slot_attention import SlotAttention, SlotFeatures, attend
from common.nn.slot_lstm import SlotLSTM
from common.nn.transformer import MultiHeadAttention, TransformerBlock

__all__ = [
    "SpatialBroadcastDecoder", "split_rgb_mask", "MLP", "ConvEncoder", "flatten_spatial",
    "PositionEmbed", "linear_grid", "ramp_grid", "SlotAttention", "SlotFeatures", "attend", "SlotLSTM",
    "MultiHeadAttention", "TransformerBlock",
]
