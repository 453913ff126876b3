"""Write a merged Llama-architecture model as a GGUF file with the ``gguf`` package (no llama.cpp).

- Tensor names come from gguf's own map for ``MODEL_ARCH.LLAMA``.
- Q and K projection rows are permuted the way llama.cpp's converter does (its rotary embedding
  pairs adjacent dimensions; transformers pairs the two halves); transformers' GGUF loader undoes
  exactly this permutation, which the round-trip test checks.
- Tokenizer metadata: a byte-level BPE ("gpt2") vocabulary, merges and special tokens read from
  ``tokenizer.json``, plus the chat template.
- Types: ``f16`` (matrices in float16, norms in float32) or ``q8_0`` (matrices in 8-bit blocks of
  32; rows whose length is not a multiple of 32 fall back to float16).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunesmith.errors import ModelError

GGUF_TYPES = ("f16", "q8_0")


def _permute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _tokenizer_metadata(writer, folder: Path, vocab_size: int) -> None:
    import gguf

    path = folder / "tokenizer.json"
    if not path.exists():
        raise ModelError(f"{folder} has no tokenizer.json; GGUF export needs a fast byte-level BPE tokenizer")
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise ModelError(f"GGUF export supports byte-level BPE tokenizers; {path} has a {model.get('type')!r} model")
    vocab = dict(model["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    for tok in spec.get("added_tokens", []):
        vocab.setdefault(tok["content"], tok["id"])
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        tok = by_id.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(tok)
            special = added.get(tok, {}).get("special")
            types.append(gguf.TokenType.CONTROL if special else
                         gguf.TokenType.USER_DEFINED if tok in added else gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    cfg_path = folder / "tokenizer_config.json"
    tcfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    for key, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                     ("pad_token", writer.add_pad_token_id), ("unk_token", writer.add_unk_token_id)):
        tok = tcfg.get(key)
        tok = tok.get("content") if isinstance(tok, dict) else tok
        if tok in vocab:
            add(vocab[tok])
    template = tcfg.get("chat_template")
    if template is None and (folder / "chat_template.jinja").exists():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if template:
        writer.add_chat_template(template)


def write_gguf(merged_dir: str | Path, out_file: str | Path, qtype: str = "f16") -> Path:
    """Convert the merged HF folder to ``out_file`` (GGUF, ``qtype`` f16 or q8_0)."""
    import gguf
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    if qtype not in GGUF_TYPES:
        raise ModelError(f"GGUF type {qtype!r} is not supported; choose one of {', '.join(GGUF_TYPES)}")
    folder, out_file = Path(merged_dir), Path(out_file)
    cfg = AutoConfig.from_pretrained(str(folder))
    if cfg.model_type not in ("llama",):
        raise ModelError(f"GGUF export supports the Llama architecture; {folder} is {cfg.model_type!r}")
    state = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(f)))
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    tied = bool(getattr(cfg, "tie_word_embeddings", False)) or "lm_head.weight" not in state
    rope_theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(folder.name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if qtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    _tokenizer_metadata(writer, folder, cfg.vocab_size)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, tensor in state.items():
        if name == "lm_head.weight" and tied:
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ModelError(f"GGUF export: no GGUF name for tensor {name!r}")
        data = tensor.to(torch.float32).numpy()
        if name.endswith("self_attn.q_proj.weight"):
            data = _permute_rotary(data, n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            data = _permute_rotary(data, n_kv)
        if data.ndim == 1:
            writer.add_tensor(new_name, data.astype(np.float32))
        elif qtype == "q8_0" and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(new_name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(new_name, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file


def load_gguf_model(gguf_file: str | Path):
    """The GGUF file loaded back (dequantised) by transformers, in float32 eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf_file = Path(gguf_file)
    return AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                dtype=torch.float32).eval()
