"""Generating the model's answers: batched `generate` with the chat template, or an OpenAI-compatible API.

The SPEC parameters map as the libraries need them (eval-anchors P1/P2): sampling is switched on
(`do_sample=True`) exactly when temperature > 0, and only then are temperature, top_p and top_k passed
(transformers warns about, and some versions reject, sampling settings under greedy decoding);
top_k -1 ("all tokens") is transformers' 0 (off), not omitted, since the model's generation config
may default to 50; repetition_penalty applies to greedy decoding as well.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kaizen_api.evalconfig import EvalEndpoint, EvalRunConfig
from kaizen_api.evaljob import EvalParameters

from kaizen_runner.eval.errors import EvalError, endpoint_status_reason
from kaizen_runner.eval.models import LocalModel

log = logging.getLogger(__name__)

Prompt = list[dict[str, Any]]  # chat messages; with images, content is a list of parts
OnBatch = Callable[[int], None]  # called with the number of prompts just finished


def hf_generation_kwargs(params: EvalParameters) -> dict[str, Any]:
    """`model.generate` keyword arguments for the SPEC parameters."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_tokens,
        "repetition_penalty": params.repetition_penalty,
        "do_sample": params.temperature > 0,
    }
    if params.temperature > 0:
        kwargs.update(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=0 if params.top_k == -1 else params.top_k,
        )
    return kwargs


def openai_body(params: EvalParameters) -> dict[str, Any]:
    """Chat-completions request fields; top_k and repetition_penalty are the vLLM / TGI extensions
    (sent only when they differ from "off", so stricter servers accept the default request)."""
    body: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
    }
    if params.top_k != -1:
        body["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        body["repetition_penalty"] = params.repetition_penalty
    return body


class LocalGenerator:
    """Left-padded batches through the chat template; images go through the VLM's processor."""

    def __init__(self, loaded: LocalModel, params: EvalParameters, batch_size: int) -> None:
        self.loaded = loaded
        self.params = params
        self.batch_size = batch_size
        self.kwargs = hf_generation_kwargs(params)
        tokenizer = loaded.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.chat_template is None and getattr(loaded.processing, "chat_template", None) is None:
            raise EvalError("ModelInvalid", f"model {loaded.path} has no chat template")

    def with_max_tokens(self, max_tokens: int) -> LocalGenerator:
        """The same model with another answer length (benchmarks that fix it per task)."""
        return LocalGenerator(
            self.loaded, self.params.model_copy(update={"max_tokens": max_tokens}), self.batch_size
        )

    def prompt_texts(self, prompts: Sequence[Prompt]) -> list[str]:
        apply = self.loaded.processing.apply_chat_template
        return [apply(p, add_generation_prompt=True, tokenize=False) for p in prompts]

    def generate(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[list[Any]] | None = None,
        on_batch: OnBatch | None = None,
    ) -> list[str]:
        import torch
        from transformers import set_seed

        set_seed(self.params.seed)
        outputs: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            texts = self.prompt_texts(batch)
            if self.loaded.vision:
                batch_images = [img for row in (images or [])[start : start + len(batch)] for img in row]
                inputs = self.loaded.processing(
                    text=texts, images=batch_images or None, padding=True, return_tensors="pt"
                )
            else:
                inputs = self.loaded.tokenizer(
                    texts, padding=True, return_tensors="pt", add_special_tokens=False
                )
            inputs = inputs.to(self.loaded.model.device)
            with torch.inference_mode():
                generated = self.loaded.model.generate(
                    **inputs, pad_token_id=self.loaded.tokenizer.pad_token_id, **self.kwargs
                )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            outputs += self.loaded.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            if on_batch:
                on_batch(len(batch))
        return outputs


class EndpointGenerator:
    """Chat completions against an OpenAI-compatible server, `concurrency` requests at a time."""

    def __init__(self, endpoint: EvalEndpoint, params: EvalParameters) -> None:
        self.endpoint = endpoint
        self.params = params
        self.body = openai_body(params)
        self.api_key = os.environ.get(endpoint.api_key_env)
        self.url = endpoint.base_url.rstrip("/") + "/chat/completions"

    def with_max_tokens(self, max_tokens: int) -> EndpointGenerator:
        return EndpointGenerator(self.endpoint, self.params.model_copy(update={"max_tokens": max_tokens}))

    def _complete(self, prompt: Prompt) -> str:
        body = {"model": self.endpoint.model, "messages": prompt, **self.body}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.endpoint.timeout_seconds) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            reason = endpoint_status_reason(err.code)
            raise EvalError(reason, f"endpoint {self.url}: HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise EvalError("InfrastructureError", f"endpoint {self.url}: {err}") from err
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as err:
            raise EvalError(
                "InfrastructureError", f"endpoint {self.url}: unexpected reply {reply!r:.300}"
            ) from err

    def generate(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[list[Any]] | None = None,
        on_batch: OnBatch | None = None,
    ) -> list[str]:
        if images and any(images):
            raise EvalError("ConfigInvalid", "an endpoint model cannot be evaluated on image data")
        with ThreadPoolExecutor(self.endpoint.concurrency) as pool:
            outputs = []
            for answer in pool.map(self._complete, prompts):
                outputs.append(answer)
                if on_batch:
                    on_batch(1)
        return outputs


def make_generator(cfg: EvalRunConfig, work_dir: Path) -> LocalGenerator | EndpointGenerator:
    """What produces the model's answers: the endpoint, or the model loaded here (adapter applied)."""
    from kaizen_runner.eval.models import default_device, load_local_model, stage_model

    model = cfg.model
    assert model is not None
    if model.endpoint is not None:
        return EndpointGenerator(model.endpoint, cfg.parameters)
    path, adapter = stage_model(model, work_dir)
    loaded = load_local_model(path, adapter, cfg.device or default_device())
    return LocalGenerator(loaded, cfg.parameters, cfg.batch_size)
