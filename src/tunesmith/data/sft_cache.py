"""Tokenised SFT data cached by fingerprint, so a distributed run reads and tokenises once.

The main process builds the datasets (`build_sft_data`) and saves them under a key made of the
data files' fingerprint, the data section, the tokenizer and the chat template; the other ranks
run after it (under `main_process_first`) and load the same files. A resumed run reuses them too.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from tunesmith.config.schema import DataConfig
from tunesmith.data.readers import fingerprint_files
from tunesmith.data.sft_dataset import SftData, as_list, build_sft_data


def sft_data_key(cfg: DataConfig, tokenizer, chat_template: str | None, seed: int) -> str:
    """Changes when the data files, the data section, the tokenizer, the template or the seed change."""
    h = hashlib.sha256()
    for part in (fingerprint_files(as_list(cfg.train_file) + as_list(cfg.eval_file)), cfg.model_dump_json(),
                 chat_template or "", f"{type(tokenizer).__name__}:{tokenizer.name_or_path}:{len(tokenizer)}",
                 json.dumps(tokenizer.get_vocab(), sort_keys=True), str(seed)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def load_or_build_sft_data(cfg: DataConfig, tokenizer, *, chat_template: str | None, seed: int, run_dir: Path,
                           write: bool = True, cache: bool = True) -> SftData:
    """The cached datasets when present; else build them (writing the quarantine and the cache only
    when `write`, i.e. on the main process). `cache=False` (a single-process run) just builds."""
    from datasets import load_from_disk

    if not cache:
        return build_sft_data(cfg, tokenizer, chat_template=chat_template, seed=seed, run_dir=run_dir)
    folder = Path(run_dir) / "cache" / f"sft-{sft_data_key(cfg, tokenizer, chat_template, seed)}"
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return SftData(train=load_from_disk(str(folder / "train")),
                       eval=load_from_disk(str(folder / "eval")) if meta["has_eval"] else None,
                       train_examples=meta["train_examples"], eval_examples=meta["eval_examples"],
                       fingerprint=meta["fingerprint"], stats={**meta["stats"], "from_cache": True})
    out_dir = Path(run_dir) if write else Path(tempfile.mkdtemp(prefix="tunesmith-rank-"))
    data = build_sft_data(cfg, tokenizer, chat_template=chat_template, seed=seed, run_dir=out_dir)
    if write:
        data.train.save_to_disk(str(folder / "train"))
        if data.eval is not None:
            data.eval.save_to_disk(str(folder / "eval"))
        meta = {"has_eval": data.eval is not None, "train_examples": data.train_examples,
                "eval_examples": data.eval_examples, "fingerprint": data.fingerprint, "stats": data.stats}
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        tmp.replace(meta_path)  # written last: its presence means the cache is complete
    return data
