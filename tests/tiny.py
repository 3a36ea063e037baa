"""A tiny randomly-initialised Llama and a small byte-level BPE tokenizer, built in seconds.

They exercise every code path of the real pipeline without downloading anything. The model is
seeded, so its fingerprint is stable across runs and machines with the same torch version.
"""

from functools import lru_cache

import torch

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Alice was beginning to get very tired of sitting by her sister on the bank.\r\n",
    "def main():\n    return 0\n\nif __name__ == '__main__':\n    main()\n",
    "GET /index.html HTTP/1.1\nHost: example.com\n<html><body>hello</body></html>\n",
]


@lru_cache(maxsize=None)
def tiny_tokenizer():
    """A byte-level BPE tokenizer with a 300-token vocabulary and two special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(TRAINING_TEXT, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")


def tiny_model(name: str = "tiny", seed: int = 0, dtype: str = "float32"):
    """A 2-layer Llama over the tiny tokenizer, wrapped as an alphazip LanguageModel."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from alphazip.model import LanguageModel

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return LanguageModel.from_hf(model, tokenizer, name, dtype)


def tiny_gemma3(seed: int = 0, **overrides):
    """A 3-layer Gemma 3 (two sliding-window layers of 20 keys, one global) over the tiny tokenizer;
    ``overrides`` go to its config.

    Its norm weights are random rather than Gemma's zeros, so that a ``w`` used where ``1 + w``
    belongs shows in the logits; its attention scale differs from 1/sqrt(head_dim) for the same reason.
    """
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = tiny_tokenizer()
    settings = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=12,
                    sliding_window=20, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                    max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    config = Gemma3TextConfig(**(settings | overrides))
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.normal_(0.0, 0.3)
    return model.eval(), tokenizer


def unigram_model(data: bytes, name: str = "unigram"):
    """A tiny Llama that predicts every token with the frequencies it has in ``data``, whatever came
    before: an order-0 model of the data, made by hand (no training), which beats brotli on text
    of words drawn at random.

    Its layers add nothing (their output projections are zero), every token embeds to the same
    unit vector, and the output head turns that into log-frequencies.
    """
    import numpy as np
    from transformers import LlamaConfig, LlamaForCausalLM

    from alphazip.model import LanguageModel
    from alphazip.tokenize import ByteTokenizer

    tokenizer = tiny_tokenizer()
    ids = ByteTokenizer.from_hf(tokenizer).encode(data)
    counts = np.bincount(ids, minlength=len(tokenizer)) + 0.01
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for name_, parameter in model.named_parameters():
            if name_.endswith("norm.weight"):
                parameter.fill_(1.0)
        model.model.embed_tokens.weight[:, 0] = 1.0
        # The final norm scales that unit vector by sqrt(hidden_size).
        model.lm_head.weight[:, 0] = torch.from_numpy(np.log(counts / counts.sum())).float() / 32 ** 0.5
    return LanguageModel.from_hf(model, tokenizer, name)
