"""Token language models: the model classes, the KV cache and decoding.

    from soundlm.lm import TokenLM, lm_small, generate, SamplingParams
"""

from soundlm.lm.cache import KVCache
from soundlm.lm.generate import generate, generate_delayed
from soundlm.lm.model import (IGNORE_INDEX, LM_PRESETS, DelayLM, DelayLMConfig, LMConfig, LMOutput, TokenLM,
                              delay_inputs, lm_base, lm_micro, lm_mini, lm_preset, lm_small, lm_tiny, load_lm, save_lm,
                              write_lm_files)
from soundlm.sampler import SamplingParams, sample_next_token

__all__ = ["KVCache", "generate", "generate_delayed", "IGNORE_INDEX", "DelayLM", "DelayLMConfig", "LMConfig",
           "LMOutput", "LM_PRESETS", "TokenLM", "delay_inputs", "lm_base", "lm_micro", "lm_mini", "lm_preset",
           "lm_small", "lm_tiny", "load_lm", "save_lm", "write_lm_files", "SamplingParams", "sample_next_token"]
