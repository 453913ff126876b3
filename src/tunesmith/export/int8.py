"""Dynamic int8 quantisation of a merged model for CPU inference.

Linear layers get int8 weights (one scale per output channel) and dynamically quantised
activations (``torch.ao.quantization.quantize_dynamic``); embeddings, norms and the output layer
stay in float (it is tied to the embeddings in SmolLM2, so the file also shrinks). On the demo run
(``benchmarks/int8_variants.py``) this keeps held-out token accuracy at 0.933 against float's
0.998, where one scale per tensor with the output layer quantised gave 0.908: dynamic activation
quantisation stays lossy on this model (GGUF q8_0, weights only, is not). The result is saved as a
state dict beside the merged model's config, and rebuilt by ``load_int8``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from tunesmith.export.merge import compare_logits, logits_of, probe_ids
from tunesmith.export.quality import held_out_delta

STATE_FILE = "model_int8.pt"


def _quantize(model):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    output = model.get_output_embeddings()
    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output}
    return quantize_dynamic(model.float().eval(), spec, dtype=torch.qint8)


def load_int8(folder: str | Path):
    """The int8 model saved by ``export_int8`` (architecture from its config.json)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(folder)))
    q = _quantize(model)
    q.load_state_dict(torch.load(folder / STATE_FILE, weights_only=False), strict=False)
    return q.eval()


def _seconds_per_forward(model, ids, repeats: int = 3) -> float:
    logits_of(model, ids)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        logits_of(model, ids)
    return (time.perf_counter() - start) / repeats


def _folder_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def export_int8(merged_dir: str | Path, out_dir: str | Path, held_out=None) -> dict:
    """Quantise the merged model; return size, CPU speed-up and quality delta against float32:
    logits on a probe batch and, given ``held_out`` ((input_ids, labels) pairs from
    ``export.quality.encode_held_out``), answer-token loss / agreement / KL on real rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir, out = Path(merged_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    ref = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    ids = probe_ids(tokenizer)
    ref_logits, ref_s = logits_of(ref, ids), _seconds_per_forward(ref, ids)
    q = _quantize(AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32))
    torch.save(q.state_dict(), out / STATE_FILE)
    for name in ("config.json", "generation_config.json"):
        if (merged_dir / name).exists():
            shutil.copy(merged_dir / name, out / name)
    tokenizer.save_pretrained(str(out))
    q_logits, q_s = logits_of(q, ids), _seconds_per_forward(q, ids)
    report = {
        "format": "int8",
        "path": str(out),
        "size_bytes": (out / STATE_FILE).stat().st_size,
        "float_size_bytes": _folder_bytes(merged_dir, "*.safetensors"),
        "float_seconds_per_forward": ref_s,
        "int8_seconds_per_forward": q_s,
        "speedup": ref_s / q_s if q_s > 0 else None,
        "quality": compare_logits(ref_logits, q_logits),
        "probe_shape": list(ids.shape),
    }
    if held_out:
        report["held_out"] = held_out_delta(ref, q, held_out)
    return report
