"""The FLOP count behind `llmops bench train`'s MFU, checked against counts written out by hand."""

from __future__ import annotations

import pytest

from llmops.dev.bench.training import device_peak_tflops, lora_flops_per_token, model_flops_per_token
from llmops.training.data import Example


def test_lora_flops_per_token_terms():
    # 4 per frozen weight, 6 per trainable one, 6 * layers * width * context for causal attention.
    assert lora_flops_per_token(1000, 10, 2, 8, 5.0) == 4 * 1000 + 6 * 10 + 6 * 2 * 8 * 5.0
    # A 1B Llama (hidden 2048, 16 layers, MLP 5632, vocab 32000, 1024-token rows), adapter ignored:
    # 4 * 888 M + 6 * 16 * 2048 * 1024 = 3.55 GFLOP + 0.20 GFLOP per token.
    frozen = 16 * (4 * 2048 * 2048 + 3 * 2048 * 5632) + 2048 * 32000
    assert frozen == 887_619_584
    assert lora_flops_per_token(frozen, 0, 16, 2048, 1024) == pytest.approx(3.752e9, rel=1e-3)


def test_model_flops_per_token_counts_a_peft_llama():
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False))
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    rows = [Example((1,), (2,)), Example((1, 2), (3, 4))]  # lengths 2 and 4: context (4 + 16) / 6

    got = model_flops_per_token(model, rows)

    frozen = 2 * (4 * 32 * 32 + 3 * 32 * 64) + 32 * 100  # q, k, v, o and the MLP per layer, plus the head
    trainable = 2 * 2 * 4 * (32 + 32)  # layers * adapted modules * r * (in + out)
    assert got["frozen_linear_parameters"] == frozen == 23_680
    assert got["trainable_parameters"] == trainable == 1_024
    assert got["flops_per_token"] == pytest.approx(4 * frozen + 6 * trainable + 6 * 2 * 32 * 20 / 6)
    assert got["attention_context"] == pytest.approx(3.3, abs=0.05)


def test_device_peak_tflops():
    assert device_peak_tflops("NVIDIA H200", "bfloat16") == 989.4
    assert device_peak_tflops("NVIDIA H100 80GB HBM3", "float16") == 989.4
    # fp32 runs on other units, an unknown card has no figure: no MFU unless a peak is given.
    assert device_peak_tflops("NVIDIA H200", "float32") is None
    assert device_peak_tflops("cpu", "float32") is None
    assert device_peak_tflops("cpu", "float32", 1.5) == 1.5
