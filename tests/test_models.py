"""fpgpt.models: specs, checkpoint I/O, tokenizers, and the numpy reference against HF transformers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fpgpt.models import (ByteTokenizer, GPT2Weights, HFTokenizer, ModelError, ModelSpec, PRESETS,
                          Reference, get_spec, load_checkpoint, load_model, load_tokenizer,
                          random_weights, save_checkpoint, shipped_model_path)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Measured max |logit difference| of the fp16 reference against fp32 over this test's 62 positions:
# 0.029 on the shipped tiny model (logits up to ~25), 0.057 on micro; the bound leaves ~8x margin.
FP16_LOGIT_BOUND = 0.25


def hf_config(spec: ModelSpec):
    return transformers.GPT2Config(
        vocab_size=spec.vocab, n_positions=spec.n_ctx, n_embd=spec.d_model, n_layer=spec.n_layer,
        n_head=spec.n_head, n_inner=spec.d_ff, activation_function="gelu_new",
        layer_norm_epsilon=spec.ln_eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=True, bos_token_id=spec.vocab - 1, eos_token_id=spec.vocab - 1,
        attn_implementation="eager")


def hf_random_model(spec: ModelSpec, seed: int):
    """A GPT2LMHeadModel with every parameter randomised (HF's own init zeroes biases and sets
    LayerNorm gains to 1, which would leave those terms untested)."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(hf_config(spec)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[0] ** 0.5)
    return model


def hf_logits_with_cache(model, prompt: list[int], steps: list[int]) -> np.ndarray:
    """Logits of every prompt position, then of each of ``steps`` fed one at a time with the cache."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        rows = [out.logits[0].numpy()]
        past = out.past_key_values
        for tok in steps:
            out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            rows.append(out.logits[0].numpy())
    return np.concatenate(rows)


def ref_logits_with_cache(ref: Reference, prompt: list[int], steps: list[int]) -> np.ndarray:
    rows = [ref.prefill(prompt)] + [ref.step(t)[None] for t in steps]
    return np.concatenate(rows)


# --- specs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, total", [
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168),
    ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200)])
def test_preset_param_counts(name, total):
    spec = get_spec(name)
    assert spec.param_count == total
    assert spec.weight_bytes() == 2 * total
    assert spec.weight_bytes(4) == 4 * total


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_count_matches_transformers(name):
    spec = get_spec(name)
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(hf_config(spec))
    # parameters() yields the tied wte / lm_head once, as param_count counts it.
    assert spec.param_count == sum(p.numel() for p in model.parameters())


def test_preset_shapes():
    xl = get_spec("gpt2-xl")
    assert (xl.n_layer, xl.n_head, xl.d_model, xl.d_head, xl.d_ff) == (48, 25, 1600, 64, 6400)
    assert get_spec("gpt2").vocab == 50257 and get_spec("gpt2").n_ctx == 1024


def test_per_token_bytes_and_flops():
    s = get_spec("gpt2")
    d = s.d_model
    # Decode reads every block weight and ln_f once, the whole wte for the LM head, and one row
    # each of wte and wpe for the embedding: all weights but the n_ctx - 1 unused wpe rows, + 1 row.
    assert s.weight_bytes_per_token(2) == 2 * (s.param_count - (s.n_ctx - 1) * d + d)
    # Doubling the context adds exactly the attention term, 4 * n_layer * d per position.
    assert s.flops_per_token(200) - s.flops_per_token(100) == 100 * 4 * s.n_layer * d
    with pytest.raises(ModelError, match=r"ctx_len must be an integer in 1\.\.1024"):
        s.flops_per_token(2000)


def test_unknown_model_and_bad_spec():
    with pytest.raises(ModelError, match=r"unknown model 'gpt5'; known models: gpt2, gpt2-medium"):
        get_spec("gpt5")
    with pytest.raises(ModelError, match=r"d_model \(100\) must be a multiple of n_head \(3\)"):
        ModelSpec("bad", 1, 3, 100, 400, 10, 8)
    with pytest.raises(ModelError, match=r"n_layer must be a positive integer, not 0"):
        ModelSpec("bad", 0, 1, 8, 32, 10, 8)


# --- reference against transformers --------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    ModelSpec("odd", n_layer=2, n_head=3, d_model=72, d_ff=288, vocab=101, n_ctx=40),
    ModelSpec("ff", n_layer=3, n_head=5, d_model=40, d_ff=100, vocab=67, n_ctx=32, ln_eps=1e-6),
])
def test_reference_matches_hf_with_cache(spec, tmp_path):
    model = hf_random_model(spec, seed=1)
    model.save_pretrained(tmp_path, safe_serialization=True)
    weights = load_checkpoint(tmp_path)
    assert weights.spec.d_ff == spec.d_ff and weights.spec.ln_eps == spec.ln_eps
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, spec.vocab, 9).tolist()
    steps = rng.integers(0, spec.vocab, 20).tolist()
    ours = ref_logits_with_cache(Reference(weights), prompt, steps)
    theirs = hf_logits_with_cache(model, prompt, steps)
    assert ours.shape == theirs.shape == (29, spec.vocab)
    assert np.abs(theirs).max() > 1.0          # logits are not trivially small
    assert np.abs(ours - theirs).max() <= 1e-4


def test_save_checkpoint_loads_in_hf(tmp_path):
    spec = ModelSpec("s", n_layer=2, n_head=3, d_model=48, d_ff=192, vocab=50, n_ctx=24)
    weights = random_weights(spec, seed=3)
    save_checkpoint(weights, tmp_path)
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    prompt, steps = [1, 5, 7, 49, 0], [3, 3, 8]
    theirs = hf_logits_with_cache(model, prompt, steps)
    ours = ref_logits_with_cache(Reference(weights), prompt, steps)
    assert np.abs(ours - theirs).max() <= 1e-4
    again = load_checkpoint(tmp_path)
    assert all(np.array_equal(again[k], weights[k]) for k in weights.tensors)
    with pytest.raises(ModelError, match="already exists; pass overwrite=True"):
        save_checkpoint(weights, tmp_path)


def test_cache_equals_full_recompute():
    weights = random_weights(ModelSpec("c", 2, 2, 16, 64, 30, 16), seed=4)
    ref = Reference(weights)
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    full = ref.prefill(ids)
    ref.prefill(ids[:3])
    stepped = [ref.step(t) for t in ids[3:]]
    assert np.allclose(np.stack(stepped), full[3:], atol=1e-5)


# --- shipped models ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.mark.parametrize("name", ["tiny", "micro"])
def test_shipped_greedy_matches_hf(name):
    tok = load_tokenizer(shipped_model_path(name))
    assert isinstance(tok, ByteTokenizer)
    prompt = tok.encode("The assert statement")
    ours = Reference(load_model(name)).generate(prompt, 32)
    model = transformers.GPT2LMHeadModel.from_pretrained(shipped_model_path(name)).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False,
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             pad_token_id=tok.eot_id)
    assert ours == out[0, len(prompt):].tolist()
    assert len(ours) == 32


def test_shipped_specs_match_presets(tiny):
    assert (tiny.spec.n_layer, tiny.spec.d_model, tiny.spec.vocab, tiny.spec.n_ctx) == (
        get_spec("tiny").n_layer, get_spec("tiny").d_model, 257, get_spec("tiny").n_ctx)
    micro = load_model("micro")
    assert micro.spec.param_count == get_spec("micro").param_count


@pytest.mark.parametrize("name", ["tiny", "micro"])
def test_shipped_models_are_trained(name):
    # Mean next-byte loss on the documentation the models were trained on; untrained weights
    # score about ln(257) = 5.5 nats. The READMEs record ~1.2-1.6 nats/byte.
    import pydoc_data.topics
    weights = load_model(name)
    ids = ByteTokenizer().encode(pydoc_data.topics.topics["assert"])[:weights.spec.n_ctx + 1]
    logits = Reference(weights).prefill(ids[:-1]).astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    assert -logp[np.arange(len(ids) - 1), ids[1:]].mean() < 2.0


def test_fp16_close_to_fp32(tiny):
    ids = ByteTokenizer().encode("The assert statement is a convenient way to insert debugging")
    l32 = ref_logits_with_cache(Reference(tiny, "fp32"), ids[:40], ids[40:])
    l16 = ref_logits_with_cache(Reference(tiny, "fp16"), ids[:40], ids[40:])
    assert np.abs(l16 - l32).max() <= FP16_LOGIT_BOUND
    assert (l16.argmax(-1) == l32.argmax(-1)).mean() >= 0.9
    assert not np.array_equal(l16, l32)       # fp16 mode really rounds


def test_topk_sampling_reproducible():
    ref = Reference(load_model("micro"))
    prompt = ByteTokenizer().encode("def ")
    a = ref.generate(prompt, 24, top_k=20, temperature=1.5, seed=7)
    b = ref.generate(prompt, 24, top_k=20, temperature=1.5, seed=7)
    c = ref.generate(prompt, 24, top_k=20, temperature=1.5, seed=8)
    assert a == b and a != c
    greedy = ref.generate(prompt, 24)
    assert ref.generate(prompt, 24, top_k=1, seed=9) == greedy


def test_generate_limits():
    ref = Reference(random_weights(ModelSpec("g", 1, 1, 8, 16, 12, 10), seed=0))
    with pytest.raises(ModelError, match=r"prompt of 6 tokens \+ 5 new tokens = 11 exceeds .*n_ctx 10"):
        ref.generate([1] * 6, 5)
    with pytest.raises(ModelError, match=r"token id 12 is outside the vocabulary 0\.\.11"):
        ref.prefill([1, 12])
    with pytest.raises(ModelError, match=r"top_k must be None or an integer in 1\.\.12, not 0"):
        ref.generate([1], 2, top_k=0)
    out = ref.generate([1, 2], 8, top_k=12, seed=0, stop_at_eot=True, eot_id=11)
    assert 1 <= len(out) <= 8 and (out[-1] == 11 or len(out) == 8) and 11 not in out[:-1]


def test_load_model_errors(tmp_path):
    with pytest.raises(ModelError, match=r"model 'gpt2' has no weights in fpgpt"):
        load_model("gpt2")
    with pytest.raises(ModelError, match=r"not a shipped model \(tiny, micro\) nor a checkpoint folder"):
        load_model(str(tmp_path / "nope"))
    assert load_model(get_spec("micro")).spec == get_spec("micro")


# --- loader errors -------------------------------------------------------------------------------

@pytest.fixture
def ckpt(tmp_path):
    spec = ModelSpec("e", 1, 2, 8, 32, 11, 6)
    return save_checkpoint(random_weights(spec, seed=0), tmp_path / "ck")


def test_corrupt_safetensors(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ModelError, match=re.escape(f"{ckpt}: model.safetensors is not a valid "
                                                   f"safetensors file (header is not JSON")):
        load_checkpoint(ckpt)


def test_truncated_safetensors(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[:-40])
    with pytest.raises(ModelError, match=r"is not a valid safetensors file \(tensor .* \(truncated\?\)\)"):
        load_checkpoint(ckpt)


def test_missing_config(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(ModelError, match=re.escape(f"{ckpt}: has no config.json; expected a Hugging "
                                                   f"Face GPT-2 checkpoint folder")):
        load_checkpoint(ckpt)


def test_missing_weights_file(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r": has no model\.safetensors"):
        load_checkpoint(ckpt)


def test_wrong_shapes(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["n_positions"] = 7
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"weight wpe has shape \(6, 8\), expected \(7, 8\)"):
        load_checkpoint(ckpt)


def test_missing_tensor(ckpt):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(ckpt / "model.safetensors")
    del tensors["transformer.h.0.mlp.c_fc.bias"]
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(ModelError, match=r"lacks 1 GPT-2 tensor\(s\): h\.0\.mlp\.c_fc\.bias"):
        load_checkpoint(ckpt)


def test_unprefixed_names_and_lm_head(ckpt):
    from safetensors.numpy import load_file, save_file
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(ckpt / "model.safetensors").items()}
    tensors["lm_head.weight"] = tensors.pop("wte.weight")
    save_file(tensors, ckpt / "model.safetensors")
    loaded = load_checkpoint(ckpt)
    assert np.array_equal(loaded["wte"], tensors["lm_head.weight"])


def test_weights_shape_check():
    spec = ModelSpec("w", 1, 1, 4, 8, 5, 3)
    t = dict(random_weights(spec).tensors)
    t["h.0.w_qkv"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ModelError, match=r"weight h\.0\.w_qkv has shape \(4, 4\), expected \(4, 12\)"):
        GPT2Weights(spec, t)


# --- tokenizers ----------------------------------------------------------------------------------

def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    text = "assert x == 1, 'naïve ✓'\n"
    ids = tok.encode(text)
    assert max(ids) < 256 and tok.decode(ids) == text
    assert tok.decode(ids + [256]) == text + "<|endoftext|>"
    assert tok.decode([0xE2, 0x9C]) == "\ufffd"        # broken UTF-8 replaced, not raised


def test_hf_tokenizer_round_trip(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(["The assert statement inserts debugging assertions."] * 20,
                            vocab_size=300, special_tokens=["<|endoftext|>"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bpe.save(str(tmp_path / "a" / "tokenizer.json"))
    bpe.save_model(str(tmp_path / "b"))                 # vocab.json + merges.txt
    for folder in ("a", "b"):
        tok = load_tokenizer(tmp_path / folder)
        assert isinstance(tok, HFTokenizer)
        text = "The assert statement, naïve."
        ids = tok.encode(text)
        assert len(ids) < len(text.encode()) and tok.decode(ids) == text
        assert tok.eot_id == 0
    assert load_tokenizer(tmp_path) is None              # ids-only folder
    (tmp_path / "a" / "tokenizer.json").write_text("{broken")
    with pytest.raises(ModelError, match=r"cannot read the tokenizer files"):
        load_tokenizer(tmp_path / "a")


def test_bf16_and_fp16_checkpoints(ckpt, tmp_path):
    from safetensors.numpy import load_file
    from safetensors.torch import save_file
    tensors = load_file(ckpt / "model.safetensors")
    save_file({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in tensors.items()},
              ckpt / "model.safetensors")
    loaded = load_model(ckpt)
    want = torch.from_numpy(tensors["transformer.h.0.attn.c_attn.weight"]).to(torch.bfloat16).float()
    assert np.array_equal(loaded["h.0.w_qkv"], want.numpy())
    half = save_checkpoint(loaded, tmp_path / "half", dtype="float16")
    assert np.array_equal(load_checkpoint(half)["wte"], loaded["wte"].astype(np.float16).astype(np.float32))
