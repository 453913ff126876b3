"""Tokenised SFT data cached by fingerprint, so a run reads and tokenises its data once.

The datasets (`build_sft_data`) are saved under `<output.dir>/.cache/sft-<key>`, the key made of
the data files' fingerprint, the data section, the tokenizer, the chat template, the seed and the
tunesmith version. Any later run with the same inputs -- a re-run, a sweep over learning rates,
`--seeds`, a resumed run, the other ranks of a distributed run (which start after the main one
under `main_process_first`) -- loads the saved rows instead of reading and tokenising again. The
quarantine file is kept with them and copied into each run directory, so a cached run still
lists every rejected row. `data.cache: false` turns it off (distributed runs keep it on).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tunesmith.config.schema import DataConfig
from tunesmith.data.readers import fingerprint_files
from tunesmith.data.sft_dataset import SftData, as_list, build_sft_data


def sft_data_key(cfg: DataConfig, tokenizer, chat_template: str | None, seed: int) -> str:
    """Changes when the data files, the data section, the tokenizer, the template or the seed change."""
    from tunesmith import __version__

    h = hashlib.sha256()
    for part in (__version__, fingerprint_files(as_list(cfg.train_file) + as_list(cfg.eval_file)), cfg.model_dump_json(),
                 chat_template or "", f"{type(tokenizer).__name__}:{tokenizer.name_or_path}:{len(tokenizer)}",
                 json.dumps(tokenizer.get_vocab(), sort_keys=True), str(seed)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def load_or_build_sft_data(cfg: DataConfig, tokenizer, *, chat_template: str | None, seed: int, run_dir: Path,
                           cache_dir: Path | None, write: bool = True) -> SftData:
    """The cached datasets when present under `cache_dir`; else build them, writing the quarantine
    and the cache only when `write` (the main process). `cache_dir=None` just builds."""
    from datasets import load_from_disk

    if cache_dir is None:
        return build_sft_data(cfg, tokenizer, chat_template=chat_template, seed=seed, run_dir=run_dir)
    folder = Path(cache_dir) / f"sft-{sft_data_key(cfg, tokenizer, chat_template, seed)}"
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if write and (folder / "quarantine.jsonl").exists():
            shutil.copyfile(folder / "quarantine.jsonl", Path(run_dir) / "quarantine.jsonl")
        return SftData(train=load_from_disk(str(folder / "train")),
                       eval=load_from_disk(str(folder / "eval")) if meta["has_eval"] else None,
                       train_examples=meta["train_examples"], eval_examples=meta["eval_examples"],
                       fingerprint=meta["fingerprint"],
                       stats={**meta["stats"], "from_cache": True, "cache": str(folder)})
    out_dir = Path(run_dir) if write else Path(tempfile.mkdtemp(prefix="tunesmith-rank-"))
    data = build_sft_data(cfg, tokenizer, chat_template=chat_template, seed=seed, run_dir=out_dir)
    if write:
        _save(folder, data, Path(run_dir) / "quarantine.jsonl")
    return data


def _save(folder: Path, data: SftData, quarantine: Path) -> None:
    """Write into a private folder, then rename it into place: a reader never sees half a cache,
    and of two runs saving the same key at once, one wins and the other's copy is dropped."""
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    data.train.save_to_disk(str(tmp / "train"))
    if data.eval is not None:
        data.eval.save_to_disk(str(tmp / "eval"))
    if quarantine.exists():
        shutil.copyfile(quarantine, tmp / "quarantine.jsonl")
    meta = {"has_eval": data.eval is not None, "train_examples": data.train_examples,
            "eval_examples": data.eval_examples, "fingerprint": data.fingerprint, "stats": data.stats}
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    try:
        tmp.rename(folder)
    except OSError:  # saved meanwhile by another run
        shutil.rmtree(tmp, ignore_errors=True)
