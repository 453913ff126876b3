"""Every method trains what it should, saved weights reload to identical logits, gradient
accumulation normalises the loss over tokens, and --resume continues from the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith.config import validate_config
from tunesmith.tasks import run_task
from tunesmith.train import load_run

ROWS = [
    {"instruction": "Say hello to the user.", "input": "", "output": "Hello!"},
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris is the capital of France."},
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, exercise."},
    {"instruction": "Translate the sentence into French.", "input": "The dog.", "output": "Le chien."},
    {"instruction": "Summarise the text.", "input": "The quick brown fox jumps over the lazy dog.", "output": "A fox jumps."},
    {"instruction": "Answer the question.", "input": "2 + 3", "output": "5"},
    {"instruction": "Extract the name.", "input": "John lives in London.", "output": '{"name": "John"}'},
    {"instruction": "Is this positive or negative?", "input": "这家酒店很好", "output": "positive"},
]


@pytest.fixture()
def sft_data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS * 2) + "\n")
    return path


def _cfg(model_dir, data, out, method: dict, **train):
    return validate_config({
        "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(data), "max_length": 256, "eval_split": 0.25},
        "method": method,
        "train": {"max_steps": 3, "batch_size": 4, "learning_rate": 5e-2, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "logging_steps": 1, "save_total_limit": 3, **train},
        "output": {"dir": str(out), "name": "run"},
    })


def _base_state(model_dir):
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}


def _logits(model, tokenizer, text="<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"):
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    model.eval()
    with torch.no_grad():
        return model(**ids).logits.float()


METHODS = {
    "full": {"name": "full"},
    "freeze": {"name": "freeze", "trainable_layers": 1},
    "lora": {"name": "lora", "r": 4, "dropout": 0.0},
    "lora-rslora-qv": {"name": "lora", "r": 4, "dropout": 0.0, "use_rslora": True, "target_modules": ["q_proj", "v_proj"]},
    "lora-pissa": {"name": "lora", "r": 4, "dropout": 0.0, "init": "pissa"},
    "dora": {"name": "dora", "r": 4, "dropout": 0.0},
    "ia3": {"name": "ia3"},
    "prefix": {"name": "prefix", "num_virtual_tokens": 4},
    "prompt": {"name": "prompt", "num_virtual_tokens": 4},
    "p-tuning": {"name": "prompt", "num_virtual_tokens": 4, "encoder": "mlp"},
}


@pytest.mark.parametrize("key", list(METHODS))
def test_method_trains_its_weights_and_reloads_identically(key, tiny_llama_dir, sft_data, tmp_path):
    method = METHODS[key]
    before = _base_state(tiny_llama_dir)
    result = run_task(_cfg(tiny_llama_dir, sft_data, tmp_path, method))
    model = result.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing was trainable"

    state = {n: p.detach() for n, p in model.named_parameters()}
    changed = {n for n in trainable if not _same_as_base(n, state[n], before)}
    assert changed, f"{key}: no trainable weight changed"

    from peft import PeftModel

    if isinstance(model, PeftModel):
        base_names = [n for n in state if n.startswith("base_model.model.") and n not in trainable]
        if method.get("init") != "pissa":  # PiSSA moves the principal part out of the base on purpose
            for n in base_names:
                key_in_base = n.removeprefix("base_model.model.").replace(".base_layer", "")
                if key_in_base in before:
                    assert torch.equal(state[n], before[key_in_base]), f"{key}: frozen base weight {n} changed"
    elif method["name"] == "freeze":
        frozen = [n for n in state if n not in trainable]
        assert frozen and all(torch.equal(state[n], before[n]) for n in frozen)
        assert all(".layers.1." in n or n == "model.norm.weight" for n in trainable), sorted(trainable)

    tokenizer = load_run(result.run_dir).tokenizer
    reloaded = load_run(result.run_dir).model
    torch.testing.assert_close(_logits(reloaded, tokenizer), _logits(model, tokenizer), rtol=1e-4, atol=1e-4)


def _same_as_base(name: str, value: torch.Tensor, before: dict) -> bool:
    key = name.removeprefix("base_model.model.").replace(".base_layer", "")
    return key in before and before[key].shape == value.shape and torch.equal(before[key], value)


def test_adapter_loads_with_plain_peft_and_transformers(tiny_llama_dir, sft_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = run_task(_cfg(tiny_llama_dir, sft_data, tmp_path, METHODS["lora"]))
    adapter = result.run_dir / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(adapter)
    via_peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), adapter)
    via_transformers = AutoModelForCausalLM.from_pretrained(adapter)  # transformers' PEFT integration
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    trained = _logits(result.model, tok)
    torch.testing.assert_close(_logits(via_peft, tok), trained, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_logits(via_transformers, tok), trained, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(_logits(base, tok), trained, atol=1e-3), "the adapter had no effect"


def _one_sgd_step(model_dir, examples, tmp_path, *, batch_size, grad_accum):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.config.schema import TrainConfig
    from tunesmith.data.render import tokenize_dataset
    from tunesmith.train import build_trainer, sft_collator

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenised, _ = tokenize_dataset(tok, examples, max_length=256)
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [t.input_ids for t in tokenised], "labels": [t.labels for t in tokenised]})
    cfg = TrainConfig(max_steps=1, batch_size=batch_size, grad_accum=grad_accum, learning_rate=1.0,
                      warmup_ratio=0.0, lr_scheduler="constant", weight_decay=0.0, max_grad_norm=0.0, logging_steps=1)
    out = tmp_path / f"ga{grad_accum}"
    out.mkdir()
    trainer = build_trainer(model, tok, ds, None, cfg, out, data_collator=sft_collator(tok), optim="sgd")
    trainer.train()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, tokenised


def test_gradient_accumulation_1x8_equals_8x1_token_level(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunesmith.data.formats import to_alpaca

    examples = [to_alpaca(r) for r in ROWS]
    w_8x1, tokenised = _one_sgd_step(tiny_llama_dir, examples, tmp_path, batch_size=8, grad_accum=1)
    w_1x8, _ = _one_sgd_step(tiny_llama_dir, examples, tmp_path, batch_size=1, grad_accum=8)

    # Reference: one gradient of the mean loss over *all* loss tokens of the 8 examples.
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    total_tokens = sum(t.n_loss_tokens for t in tokenised)
    loss_sum = 0.0
    for t in tokenised:
        ids = torch.tensor([t.input_ids])
        labels = torch.tensor([t.labels])
        logits = model(input_ids=ids).logits[:, :-1]
        loss_sum = loss_sum + torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
    (loss_sum / total_tokens).backward()
    expected = {n: start[n] - p.grad for n, p in model.named_parameters()}  # SGD, lr = 1

    lengths = {t.n_loss_tokens for t in tokenised}
    assert len(lengths) > 1, "examples must differ in loss tokens for this test to mean anything"
    for n in expected:
        torch.testing.assert_close(w_8x1[n], expected[n], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(w_1x8[n], expected[n], rtol=1e-4, atol=1e-5)


def test_resume_continues_from_the_checkpoint_step(tiny_llama_dir, sft_data, tmp_path):
    first = run_task(_cfg(tiny_llama_dir, sft_data, tmp_path, METHODS["lora"], max_steps=2, save_steps=2, eval_steps=2))
    assert (first.run_dir / "checkpoints" / "checkpoint-2").is_dir()
    cfg = _cfg(tiny_llama_dir, sft_data, tmp_path, METHODS["lora"], max_steps=4, save_steps=2, eval_steps=2)
    resumed = run_task(cfg, resume=True)
    assert resumed.run_dir == first.run_dir
    state = json.loads((resumed.run_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    rows = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    loss_steps = [r["step"] for r in rows if "loss" in r]
    # Steps 1-2 logged by the first run, 3-4 by the resumed one; a restart from 0 would repeat step 1.
    assert loss_steps == sorted(set(loss_steps)) and {1, 2, 3, 4} <= set(loss_steps), loss_steps


def test_train_writes_the_run_directory(tiny_llama_dir, sft_data, tmp_path):
    result = run_task(_cfg(tiny_llama_dir, sft_data, tmp_path, METHODS["lora"], eval_steps=1))
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"adapter", "config.yaml", "run_info.json", "metrics.jsonl", "loss_curve.png", "trainer_state.json"} <= names
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["versions"]["transformers"].startswith("5.") and len(info["data_fingerprint"]) >= 12
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in rows) and any("eval_loss" in r for r in rows)
    reloaded = validate_config(__import__("yaml").safe_load((result.run_dir / "config.yaml").read_text()))
    assert reloaded.method.name == "lora"
