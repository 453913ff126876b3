"""Which dynamic-int8 settings keep an exported causal LM closest to float: per-tensor vs
per-channel weight scales, output layer quantised or kept float. Held-out answer-token loss,
token accuracy, top-1 agreement and KL on the run's validation rows; seconds per forward; size.

Run (heavy): OMP_NUM_THREADS=2 flock /tmp/tunesmith-heavy.lock python benchmarks/int8_variants.py \
    --merged /tmp/exports/demo/merged --run runs/demo
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.export.merge import logits_of, probe_ids
from tunesmith.export.quality import encode_held_out, held_out_conversations, held_out_delta


def _seconds(model, ids) -> float:
    logits_of(model, ids)
    start = time.perf_counter()
    for _ in range(3):
        logits_of(model, ids)
    return (time.perf_counter() - start) / 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merged", required=True, help="merged folder written by `tunesmith export`")
    ap.add_argument("--run", required=True, help="the run directory (for its held-out rows)")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.merged)
    examples = encode_held_out(tok, held_out_conversations(args.run)[0])
    ref = AutoModelForCausalLM.from_pretrained(args.merged, dtype=torch.float32).eval()
    ids = probe_ids(tok)
    print(f"float: {_seconds(ref, ids):.3f} s/forward")
    for label, qconfig, keep_output in [("per_tensor_all", default_dynamic_qconfig, False),
                                        ("per_channel_all", per_channel_dynamic_qconfig, False),
                                        ("per_tensor_float_output", default_dynamic_qconfig, True),
                                        ("per_channel_float_output", per_channel_dynamic_qconfig, True)]:
        model = AutoModelForCausalLM.from_pretrained(args.merged, dtype=torch.float32).eval()
        output = model.get_output_embeddings()
        spec = {n: qconfig for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and not (keep_output and m is output)}
        q = quantize_dynamic(model, spec, dtype=torch.qint8)
        h = held_out_delta(ref, q, examples)
        with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
            torch.save(q.state_dict(), fh.name)
            size = os.path.getsize(fh.name)
        print(f"{label}: {size / 1e6:.0f} MB, {_seconds(q, ids):.3f} s/forward, loss {h['loss']:.4f} "
              f"(float {h['loss_reference']:.4f}), token accuracy {h['token_accuracy']:.4f} "
              f"(float {h['token_accuracy_reference']:.4f}), top-1 agreement {h['top1_agreement']:.4f}, "
              f"KL {h['mean_kl']:.4f}", flush=True)


if __name__ == "__main__":
    main()
