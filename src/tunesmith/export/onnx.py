"""ONNX export of a merged causal LM (logits of a full sequence, no KV cache) with
``torch.onnx.export``, validated by running it with onnxruntime against PyTorch logits."""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.errors import ModelError
from tunesmith.export.merge import compare_logits, logits_of, probe_ids

ONNX_FILE = "model.onnx"


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export_onnx(merged_dir: str | Path, out_dir: str | Path, opset: int = 18) -> dict:
    """Write ``out_dir/model.onnx`` (+ tokenizer) and compare onnxruntime logits with PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ModelError("ONNX export needs onnx and onnxruntime: pip install 'tunesmith[export]'") from e
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir, out = Path(merged_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    model = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    ids = probe_ids(tokenizer)
    mask = torch.ones_like(ids)
    path = out / ONNX_FILE
    with torch.no_grad():
        torch.onnx.export(
            _LogitsOnly(model), (ids, mask), str(path), dynamo=False, opset_version=opset,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "logits": {0: "batch", 1: "sequence"}})
    tokenizer.save_pretrained(str(out))
    model.config.save_pretrained(str(out))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # A second shape checks that the sequence axis really is dynamic.
    longer = torch.cat([ids, ids], dim=1)
    report = {"format": "onnx", "path": str(path), "size_bytes": sum(p.stat().st_size for p in out.glob("model.onnx*"))}
    for label, x in (("probe", ids), ("probe_x2", longer)):
        ort_logits = session.run(["logits"], {"input_ids": x.numpy(), "attention_mask": torch.ones_like(x).numpy()})[0]
        report[label] = compare_logits(logits_of(model, x), torch.from_numpy(ort_logits))
    return report
