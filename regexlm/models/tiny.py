"""A tiny random-weight Llama that uses a real tokenizer, for fast constraint tests.

Two layers, hidden size 64: a forward pass takes well under a millisecond per token, yet the
vocabulary (and so every tokenization corner case) is the real one. Random weights make the
logits spread over the whole vocabulary, which drives decoding into every corner of a
constraint far more often than a trained model would.
"""

from __future__ import annotations


def build_tiny_llama(
    tokenizer,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int | None = None,
):
    """Build an eval-mode random Llama whose vocabulary matches ``tokenizer``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    vocab_size = vocab_size or len(tokenizer)
    eos_id = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id,
        tie_word_embeddings=True,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
        # Larger output scale than the default init, so the sampled distributions are peaked
        # and varied rather than almost uniform.
        with torch.no_grad():
            model.model.embed_tokens.weight.normal_(0.0, 1.0)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eos_id, pad_token_id=config.pad_token_id
    )
    model.eval()
    return model
