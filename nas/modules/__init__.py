"""PyTorch modules: one elastic class per block type, serving both standalone blocks and the supernet."""
from nas.modules._builder import (
    activate,
    build_block,
    construct_block,
    example_input,
    input_shape,
    is_channel_last,
    list_block_types,
)
from nas.modules.attention import Attention
from nas.modules.ffn import FFN
from nas.modules.firstconv import FirstConv
from nas.modules.head import Head
from nas.modules.init import init_weights_
from nas.modules.layers import inherit
from nas.modules.mbconv import MBConv

__all__ = [
    "FFN", "Attention", "FirstConv", "Head", "MBConv", "activate", "build_block", "construct_block",
    "example_input", "inherit", "init_weights_", "input_shape", "is_channel_last", "list_block_types",
]
