"""The HTTP API: OpenAI-compatible chat/completions/models, /v1/classify, /health, /metrics.

Prompts are rendered with ``tunesmith.data.render`` (the training chat template and BOS rule);
generation goes through the ``Batcher``; every request passes auth -> rate limit -> concurrency
gate, and errors are answered in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tunesmith.config.serve_schema import ServeConfig
from tunesmith.serve.adapters import ServedModel
from tunesmith.serve.batching import Batcher, Job
from tunesmith.serve.limits import (ApiError, BodySizeLimit, ConcurrencyGate, RateLimiter, check_bearer,
                                    configured_keys)
from tunesmith.serve.metrics import CONTENT_TYPE, ServeMetrics
from tunesmith.serve.stops import MAX_STOP_STRINGS, find_stop, stop_strings, streamable


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="A model id from GET /v1/models (base or adapter name).")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stream: bool = False
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_STRINGS)] | None = Field(
        None, description="Up to 4 strings; generation ends at the first one, which is not returned.")
    n: int = Field(1, ge=1)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict]


class ChatRequest(_Req):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Req):
    prompt: str | list[str]


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | list[str] = Field(min_length=1)


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def create_app(served: ServedModel, cfg: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``served`` under the limits of ``cfg``."""
    from tunesmith.data.render import encode_prompt
    from tunesmith.eval.generate import stop_token_ids

    cfg = cfg or ServeConfig()
    keys = configured_keys(cfg.api_keys, cfg.api_keys_env)
    metrics = ServeMetrics()
    limiter = RateLimiter(cfg.rate_limit_per_minute)
    tok = served.tokenizer
    stops = stop_token_ids(tok, served.chat_template) if not served.is_classifier else []

    def decode(ids: list[int]) -> str:
        return tok.decode(ids, skip_special_tokens=True)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (stops[0] if stops else 0)
    state: dict = {}

    app = FastAPI(title="tunesmith serve", version="1")
    app.state.served, app.state.metrics, app.state.config = served, metrics, cfg

    @app.on_event("startup")
    async def _start():
        state["gate"] = ConcurrencyGate(cfg.max_concurrency, cfg.max_queue)
        if not served.is_classifier:
            state["batcher"] = Batcher(served.model, stops=stops, pad_id=pad_id, batch_wait_ms=cfg.batch_wait_ms,
                                       max_batch_size=cfg.max_batch_size, metrics=metrics,
                                       uses_adapters=bool(served.adapters), decode=decode)
        app.state.batcher = state.get("batcher")

    @app.on_event("shutdown")
    async def _stop():
        if state.get("batcher"):
            state["batcher"].close()

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        start = time.perf_counter()
        route = request.url.path if request.url.path in _ROUTES else "other"
        response = await call_next(request)
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        metrics.errors.labels(exc.code or str(exc.status)).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _schema_error(request: Request, exc: RequestValidationError):
        metrics.errors.labels("schema").inc()
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        msg = "; ".join(f"{'.'.join(str(x) for x in d['loc'])}: {d['msg']}" for d in detail)
        return JSONResponse({"error": {"message": msg, "type": "invalid_request_error", "code": "schema_error",
                                       "param": None}, "detail": detail}, status_code=422)

    def _admit(request: Request, generative: bool | None = None) -> None:
        key = check_bearer(request.headers.get("authorization"), keys)
        limiter.check(key or (request.client.host if request.client else "anonymous"))
        if generative is True and served.is_classifier:
            raise ApiError(400, "this server serves a classifier: use POST /v1/classify", param="model")
        if generative is False and not served.is_classifier:
            raise ApiError(400, "this server serves a generative model; use /v1/chat/completions", param="model")

    def _max_tokens(req) -> int:
        n = getattr(req, "max_completion_tokens", None) or req.max_tokens or min(cfg.default_max_tokens, cfg.max_tokens_limit)
        if n > cfg.max_tokens_limit:
            raise ApiError(400, f"max_tokens={n} is over this server's limit of {cfg.max_tokens_limit}",
                           code="max_tokens_too_large", param="max_tokens")
        if req.n != 1:
            raise ApiError(400, "only n=1 is supported", param="n")
        return n

    def _check_prompt(ids: list[int]) -> list[int]:
        if len(ids) > cfg.max_prompt_tokens:
            raise ApiError(400, f"prompt has {len(ids)} tokens; this server accepts at most {cfg.max_prompt_tokens}",
                           code="context_length_exceeded", param="messages")
        return ids

    async def _run(request, req, prompts: list[list[int]], kind: str):
        adapter = served.adapter_for(req.model)
        max_tokens = _max_tokens(req)
        gate: ConcurrencyGate = state["gate"]
        metrics.queue_depth.set(gate.waiting + state["batcher"].queue.qsize())
        loop = asyncio.get_running_loop()
        sampling = dict(do_sample=req.temperature > 0, temperature=req.temperature, top_p=req.top_p,
                        stop=stop_strings(req.stop))
        if req.stream:
            return await _stream(request, req, prompts[0], adapter, max_tokens, sampling, kind)
        async with gate:
            metrics.running.set(gate.running)
            jobs = [Job(p, adapter, max_tokens, loop=loop, future=loop.create_future(), **sampling) for p in prompts]
            done = await asyncio.gather(*(state["batcher"].submit(j) for j in jobs))
        metrics.running.set(gate.running)
        choices, n_in, n_out = [], sum(len(p) for p in prompts), sum(len(j.tokens) for j in done)
        for i, job in enumerate(done):
            text = decode(job.tokens)
            cut = find_stop(text, job.stop)
            text, reason = (text, job.finish_reason) if cut is None else (text[:cut], "stop")
            if kind == "chat":
                choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason})
            else:
                choices.append({"index": i, "text": text, "finish_reason": reason, "logprobs": None})
        metrics.tokens_in.labels(req.model).inc(n_in)
        metrics.tokens_out.labels(req.model).inc(n_out)
        return {"id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion" if kind == "chat" else "text_completion",
                "created": int(time.time()), "model": req.model, "choices": choices,
                "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}

    async def _stream(request, req, prompt, adapter, max_tokens, sampling, kind):
        gate: ConcurrencyGate = state["gate"]
        await gate.__aenter__()  # 503 is raised here, before the stream starts
        loop = asyncio.get_running_loop()
        tokens_q: asyncio.Queue = asyncio.Queue()
        job = Job(prompt, adapter, max_tokens, loop=loop, future=loop.create_future(),
                  on_token=tokens_q.put_nowait, **sampling)
        job.future.add_done_callback(lambda f: tokens_q.put_nowait(None))
        state["batcher"].submit(job)
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(delta_text, reason=None, first=False):
            if kind == "chat":
                delta = ({"role": "assistant", "content": ""} if first else
                         {"content": delta_text} if delta_text else {})
                choice = {"index": 0, "delta": delta, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": delta_text or "", "finish_reason": reason, "logprobs": None}
            body = {"id": rid, "object": obj, "created": int(time.time()), "model": req.model, "choices": [choice]}
            return f"data: {json.dumps(body)}\n\n"

        async def events():
            ids, sent, stopped = [], 0, False
            try:
                if kind == "chat":
                    yield chunk(None, first=True)
                while not stopped:
                    t = await tokens_q.get()
                    if t is None:
                        break
                    ids.append(t)
                    text = decode(ids)
                    if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next byte
                        continue
                    # Never send what a stop string may still cut: hold back a possible stop prefix.
                    stopped = find_stop(text, job.stop) is not None
                    final = streamable(text, job.stop)
                    if final > sent:
                        yield chunk(text[sent:final])
                        sent = final
                if stopped:
                    yield chunk(None, reason="stop")
                elif job.future.exception() is not None:
                    yield f"data: {json.dumps({'error': {'message': str(job.future.exception()), 'type': 'server_error'}})}\n\n"
                else:  # the row ended without a stop string: what was held back is final now
                    text = decode(ids)
                    if len(text) > sent:
                        yield chunk(text[sent:])
                    yield chunk(None, reason=job.finish_reason)
                yield "data: [DONE]\n\n"
                metrics.tokens_in.labels(req.model).inc(len(prompt))
                metrics.tokens_out.labels(req.model).inc(len(ids))
            finally:
                await gate.__aexit__(None, None, None)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        _admit(request, generative=True)
        messages = [{"role": m.role, "content": _text_of(m.content)} for m in req.messages]
        try:
            ids = encode_prompt(tok, messages, served.chat_template)
        except Exception as exc:  # the template refused the conversation (roles, order)
            raise ApiError(400, f"the chat template cannot render these messages: {exc}", param="messages") from exc
        return await _run(request, req, [_check_prompt(ids)], "chat")

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        _admit(request, generative=True)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts or (req.stream and len(prompts) != 1):
            raise ApiError(400, "give one prompt (or a list of prompts without stream)", param="prompt")
        return await _run(request, req, [_check_prompt(tok(p)["input_ids"]) for p in prompts], "text")

    @app.get("/v1/models")
    async def list_models(request: Request):
        _admit(request)
        now = int(time.time())
        return {"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "tunesmith"}
                                           for m in served.model_ids]}

    @app.post("/v1/classify")
    async def classify(req: ClassifyRequest, request: Request):
        _admit(request, generative=False)
        served.adapter_for(req.model)
        texts = [req.input] if isinstance(req.input, str) else req.input
        async with state["gate"]:
            rows = await asyncio.to_thread(_classify, served, texts)
        return {"object": "list", "model": req.model, "data": [{"index": i, **row} for i, row in enumerate(rows)]}

    @app.get("/health")
    async def health():
        b = state.get("batcher")
        return {"status": "ok", "models": served.model_ids, "batches_run": b.batches_run if b else 0}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return _with_body_limit(app, cfg.max_request_bytes)


_ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/classify", "/health", "/metrics"}


def _with_body_limit(app: FastAPI, max_bytes: int) -> FastAPI:
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
    return app


def _classify(served: ServedModel, texts: list[str]) -> list[dict]:
    """Per text: ``label`` + ``score`` (its probability) + ``scores`` (all labels); a multi-label
    run gives ``labels`` (those at >= 0.5) and a regression run only ``score``."""
    import torch

    if served.predictor is not None:  # a classify run: its own labels, problem type and max_length
        names = {"confidence": "score", "probabilities": "scores"}
        return [{names.get(k, k): v for k, v in row.items() if k != "text"} for row in served.predictor.classify(texts)]
    enc = served.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        probs = torch.softmax(served.model(**enc).logits.float(), dim=-1)
    labels = served.model.config.id2label
    return [{"label": labels[int(p.argmax())], "score": float(p.max()),
             "scores": {labels[k]: float(v) for k, v in enumerate(p)}} for p in probs]


def run_server(served: ServedModel, cfg: ServeConfig) -> None:
    """Serve until interrupted (uvicorn, one process: the model lives once in memory)."""
    import uvicorn

    uvicorn.run(create_app(served, cfg), host=cfg.host, port=cfg.port, log_level="info")
