"""A chat session with a trained run: the same chat template as training, history kept."""

from __future__ import annotations

from pathlib import Path

from tunesmith.eval.generate import generate_batch
from tunesmith.train.artifacts import load_run


class ChatSession:
    def __init__(self, model, tokenizer, *, system: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0):
        self.model, self.tokenizer = model, tokenizer
        self.system = system
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.reset()

    @classmethod
    def from_run(cls, run_dir: str | Path, **kwargs) -> "ChatSession":
        run = load_run(run_dir)
        return cls(run.model, run.tokenizer, **kwargs)

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, text: str) -> str:
        self.messages.append({"role": "user", "content": text})
        sampling = {"do_sample": self.temperature > 0}
        if self.temperature > 0:
            sampling["temperature"] = self.temperature
        result = generate_batch(self.model, self.tokenizer, [self.messages], max_new_tokens=self.max_new_tokens,
                                batch_size=1, **sampling)[0]
        self.messages.append({"role": "assistant", "content": result.text})
        return result.text
