"""Benchmarks/gpu/bench_lora.py's helpers that need no GPU: the bf16 copy of the MXFP4
checkpoint that Unsloth's anchor loads (transformers reads it with no missing or unexpected
weight and gives the dequantized MXFP4 model's logits exactly; its tokenizer loads), and the
synthetic chats of the real-sequence rows (packed and padded, the same chats, the same loss)."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Benchmarks", "gpu"))
import anchors  # noqa: E402
import bench_lora  # noqa: E402
from tuna_torch import forward_pass, loading  # noqa: E402
from tuna_torch.data import padded_batch  # noqa: E402


def test_the_bf16_copy_is_the_dequantized_checkpoint(tmp_path):
    from transformers import AutoTokenizer, GptOssForCausalLM
    cfg = json.loads(json.dumps(bench_lora.GPT_OSS_20B))
    cfg.update(bench_lora.SMALL)
    src, dst = str(tmp_path / "mxfp4"), str(tmp_path / "bf16")
    bench_lora.write_checkpoint(src, cfg, torch.device("cpu"))
    dequantized, _ = loading.load_base_model(src, torch.device("cpu"), torch.bfloat16, "eager", "eager")
    bench_lora.write_bf16_checkpoint(dequantized, src, dst)
    assert "quantization_config" not in json.load(open(os.path.join(dst, "config.json")))
    copy, info = GptOssForCausalLM.from_pretrained(dst, dtype=torch.bfloat16, output_loading_info=True, local_files_only=True)
    assert not any(info.values()), info
    ids = torch.randint(0, cfg["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(copy(ids).logits, dequantized(ids).logits)
    tokenizer = AutoTokenizer.from_pretrained(dst, local_files_only=True)
    assert tokenizer.eos_token == "<|return|>" and tokenizer.pad_token == "<|endoftext|>"


def test_packed_and_padded_chats_are_the_same_chats_and_loss(tmp_path):
    cfg = json.loads(json.dumps(bench_lora.GPT_OSS_20B))
    cfg.update(bench_lora.SMALL)
    src = str(tmp_path / "mxfp4")
    bench_lora.write_checkpoint(src, cfg, torch.device("cpu"))
    model, _ = loading.load_base_model(src, torch.device("cpu"), torch.float32, "eager", "eager")
    seq, batch = 64, 2
    chats = anchors.chat_examples(cfg["vocab_size"], seq, 40)
    assert all(int(0.15 * seq) <= len(e) <= int(0.88 * seq) for e in chats)
    (packed, tokens, lengths), = anchors.chat_batches(chats, batch, seq, True, 1)
    assert tokens == sum(lengths) and len(lengths) > batch  # several chats a row
    assert packed["input_ids"].shape[0] == batch and packed["input_ids"].shape[1] <= seq
    padded = [anchors.chat_batches(chats, 1, seq, False, len(lengths))[k][0] for k in range(len(lengths))]
    assert [int((b["attention_mask"] == 1).sum()) for b in padded] == lengths  # the same chats, in order
    with torch.no_grad():
        sp, n_p = forward_pass.token_loss_sum(model, packed, torch.device("cpu"))
        pads = [forward_pass.token_loss_sum(model, padded_batch(chats[k:k + 1]), torch.device("cpu")) for k in range(len(lengths))]
    assert n_p == sum(n for _, n in pads)
    torch.testing.assert_close(sp, sum(s for s, _ in pads), rtol=1e-5, atol=0)  # no chat sees another's tokens
