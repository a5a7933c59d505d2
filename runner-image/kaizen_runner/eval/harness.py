"""lm-evaluation-harness: the SPEC's 12 benchmarks as harness tasks, run offline on staged datasets.

Parameters map as eval-anchors §1.4 verified for lm-eval 0.4.13: max_tokens -> max_gen_toks;
temperature > 0 adds do_sample=True (gsm8k / humaneval / ifeval YAMLs say do_sample: false, and the
harness would otherwise zero the temperature); top_k -1 -> 0 for the hf backend (transformers' "off");
seed -> all four harness seeds. Loglikelihood tasks ignore every sampling parameter and 0-shot-locked
tasks ignore num_fewshot: each such case becomes a warning in the results (and the job's status).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import aiohttp
import requests
from kaizen_api.evalconfig import EvalRunConfig
from kaizen_api.evaljob import EvalParameters
from kaizen_api.results import EvalTaskResult

from kaizen_runner.eval.errors import EvalError, endpoint_status_reason
from kaizen_runner.eval.progress import EvalProgressReporter
from kaizen_runner.eval.staged import not_staged, staged_root
from kaizen_runner.eval.standard import SuiteOutcome

log = logging.getLogger(__name__)

# SPEC task -> harness tasks (lm-eval 0.4.13 names).
HARNESS_TASKS: dict[str, tuple[str, ...]] = {
    "arc": ("arc_easy", "arc_challenge"),
    "gsm8k": ("gsm8k",),
    "hellaswag": ("hellaswag",),
    "humaneval": ("humaneval",),
    "ifeval": ("ifeval",),
    "lambada": ("lambada_openai",),
    "mmlu": ("mmlu",),
    "openbookqa": ("openbookqa",),
    "piqa": ("piqa",),
    "sciq": ("sciq",),
    "truthfulqa": ("truthfulqa_mc2",),
    "winogrande": ("winogrande",),
}
CODE_TASKS = ("humaneval",)
_DEFAULTS = EvalParameters()
_SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "repetition_penalty": "repetitionPenalty",
    "max_tokens": "maxTokens",
}


def gen_kwargs(params: EvalParameters, backend: str) -> dict[str, Any]:
    """The harness's gen_kwargs for the SPEC parameters (`backend` hf or api)."""
    out: dict[str, Any] = {"max_gen_toks": params.max_tokens, "do_sample": params.temperature > 0}
    out["temperature"] = params.temperature
    if params.temperature > 0:
        out["top_p"] = params.top_p
        if params.top_k != -1:
            out["top_k"] = params.top_k
        elif backend == "hf":
            out["top_k"] = 0
    if params.repetition_penalty != 1.0:
        out["repetition_penalty"] = params.repetition_penalty
    if backend == "api":
        out["seed"] = params.seed
    return out


def harness_names(tasks: list[str]) -> list[str]:
    return [name for task in tasks for name in HARNESS_TASKS[task]]


def parameter_warnings(params: EvalParameters, loaded: dict[str, Any]) -> list[str]:
    """What a task will ignore: sampling settings on loglikelihood tasks, num_fewshot where locked."""
    changed = [
        camel for field, camel in _SAMPLING.items() if getattr(params, field) != getattr(_DEFAULTS, field)
    ]
    warnings = []
    for name, task in loaded.items():
        output_type = task.get_config("output_type")
        if output_type != "generate_until" and changed:
            warnings.append(
                f"{name} scores log-likelihoods ({output_type}); {', '.join(changed)} have no effect on it"
            )
        if params.num_fewshot is not None and task.get_config("num_fewshot") == 0 and params.num_fewshot != 0:
            warnings.append(f"{name} is fixed at 0-shot; numFewshot {params.num_fewshot} is ignored")
        configured = task.get_config("generation_kwargs") or {}
        if (
            output_type == "generate_until"
            and params.temperature > 0
            and configured.get("do_sample") is False
        ):
            warnings.append(
                f"{name} decodes greedily by default; do_sample=True was set so temperature "
                f"{params.temperature} takes effect"
            )
    return warnings


def _offline_env(root: Path) -> None:
    """Point the Hugging Face libraries at the staged cache, offline (also if already imported)."""
    hf_home = root / "hf"
    os.environ.update(
        HF_HOME=str(hf_home),
        HF_DATASETS_CACHE=str(hf_home / "datasets"),
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
    )
    import datasets.config

    datasets.config.HF_DATASETS_CACHE = hf_home / "datasets"
    datasets.config.HF_DATASETS_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


def _load_tasks(manager: Any, names: list[str]) -> dict[str, Any]:
    """Load the harness tasks (and their datasets); a dataset missing from the cache is DataNotStaged."""
    try:
        loaded = manager.load(names)
    except (OSError, ConnectionError, ValueError, KeyError) as err:
        raise not_staged(f"a dataset of {', '.join(names)} ({type(err).__name__}: {str(err)[:300]})") from err
    return dict(loaded["tasks"])


def _model(cfg: EvalRunConfig, work_dir: Path, backend: str) -> tuple[Any, bool]:
    """The harness LM and whether prompts go through the chat template."""
    from kaizen_runner.eval.models import default_device, stage_model

    model = cfg.model
    assert model is not None
    if backend == "api":
        from lm_eval.models.openai_completions import LocalChatCompletion

        assert model.endpoint is not None
        base = model.endpoint.base_url.rstrip("/") + "/chat/completions"
        if model.endpoint.api_key_env != "OPENAI_API_KEY" and model.endpoint.api_key_env in os.environ:
            os.environ["OPENAI_API_KEY"] = os.environ[model.endpoint.api_key_env]
        # No tokenizer: prompts go out as chat messages, and a tokenizer backend would be fetched from
        # the Hub (huggingface) or from OpenAI's servers (tiktoken's BPE files), neither reachable offline.
        lm = LocalChatCompletion(
            model=model.endpoint.model,
            base_url=base,
            num_concurrent=model.endpoint.concurrency,
            timeout=math.ceil(model.endpoint.timeout_seconds),
            tokenizer_backend=None,
            tokenized_requests=False,
        )
        return lm, True
    from lm_eval.models.huggingface import HFLM

    path, adapter = stage_model(model, work_dir)
    device = cfg.device or default_device()
    args: dict[str, Any] = {"pretrained": str(path), "device": device, "batch_size": cfg.batch_size}
    args["dtype"] = "bfloat16" if device.startswith("cuda") else "float32"
    if adapter is not None:
        args["peft"] = str(adapter)
    try:
        lm = HFLM(**args)
    except (OSError, ValueError) as err:
        raise EvalError("ModelInvalid", f"lm-eval cannot load model {path}: {err}") from err
    return lm, bool(model.instruction_tuned)


def _track(lm: Any, reporter: EvalProgressReporter) -> None:
    """Report requests done / total around the LM's request methods."""
    for method in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        inner = getattr(lm, method)

        def wrapped(requests: list[Any], *args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            reporter.add_total(len(requests))
            out = _inner(requests, *args, **kwargs)
            reporter.advance(len(requests))
            return out

        setattr(lm, method, wrapped)


def _task_results(raw: dict[str, Any], names: list[str]) -> list[EvalTaskResult]:
    """Per harness task (or group, for mmlu) its metrics: `metric` or `metric@filter`, stderr in details.
    NaN and infinite numbers (truthfulqa_mc2's 0/0) are left out: JSON has no spelling for them."""
    out = []
    for name in names:
        entry = (raw.get("groups") or {}).get(name) or raw["results"].get(name) or {}
        metrics: dict[str, float] = {}
        details: dict[str, float] = {}
        for key, value in entry.items():
            if "," not in key or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            metric, filt = key.split(",", 1)
            label = metric if filt == "none" else f"{metric}@{filt}"
            (details if "_stderr" in metric else metrics)[label] = float(value)
        samples = (raw.get("n-samples") or {}).get(name, {}).get("effective", 0)
        out.append(EvalTaskResult(task=name, metrics=metrics, samples=samples, details=details or None))
    return out


def model_failure(err: Exception, names: list[str]) -> EvalError:
    """What the model's side raised: an endpoint's HTTP status error (requests' with one request in
    flight, aiohttp's with several) is the user's for a wrong URL, model or key, as in the other suites."""
    status = None
    if isinstance(err, aiohttp.ClientResponseError):
        status = err.status
    elif isinstance(err, requests.HTTPError) and err.response is not None:
        status = err.response.status_code
    message = f"lm-eval failed while evaluating {', '.join(names)}: {type(err).__name__}: {err}"
    return EvalError(endpoint_status_reason(status), message)


def run_harness(cfg: EvalRunConfig, work_dir: Path, reporter: EvalProgressReporter) -> SuiteOutcome:
    root = staged_root(cfg, work_dir)
    tasks = list(cfg.tasks or [])
    backend = "api" if cfg.model and cfg.model.endpoint else "hf"
    if any(t in CODE_TASKS for t in tasks) and not cfg.allow_code_execution:
        raise EvalError(
            "ConfigInvalid",
            "humaneval runs the model's generated code; set allowCodeExecution: true to allow it",
        )
    _offline_env(root)
    import lm_eval
    from lm_eval.tasks import TaskManager

    include = root / "tasks"
    manager = TaskManager(include_path=str(include) if include.is_dir() else None)
    names = harness_names(tasks)
    loaded = _load_tasks(manager, names)
    if backend == "api":
        scored = [n for n, t in loaded.items() if t.get_config("output_type") != "generate_until"]
        if scored:
            raise EvalError(
                "ConfigInvalid",
                f"an OpenAI-compatible endpoint gives no log-likelihoods; {', '.join(scored)} "
                "need a model loaded from its files (an endpoint serves gsm8k, humaneval and ifeval)",
            )
    warnings = parameter_warnings(cfg.parameters, loaded)
    lm, chat = _model(cfg, work_dir, backend)
    _track(lm, reporter)
    if any(t in CODE_TASKS for t in tasks):
        os.environ["HF_ALLOW_CODE_EVAL"] = "1"
    p = cfg.parameters
    try:
        raw = lm_eval.simple_evaluate(
            model=lm,
            tasks=names,
            task_manager=manager,
            num_fewshot=p.num_fewshot,
            gen_kwargs=gen_kwargs(p, backend),
            limit=cfg.limit,
            log_samples=p.log_samples,
            apply_chat_template=chat,
            fewshot_as_multiturn=chat,
            random_seed=p.seed,
            numpy_random_seed=p.seed,
            torch_random_seed=p.seed,
            fewshot_random_seed=p.seed,
            confirm_run_unsafe_code=cfg.allow_code_execution,
            bootstrap_iters=0,
        )
    except (OSError, aiohttp.ClientError) as err:
        # The tasks' data loaded above: this is the model's side, e.g. an endpoint that cannot be reached
        # (requests' and aiohttp's connection errors are OSErrors), which a retry may find up again, or
        # one that refuses the request (aiohttp's status errors are no OSErrors).
        raise model_failure(err, names) from err
    assert raw is not None
    samples = {name: list(rows) for name, rows in (raw.get("samples") or {}).items()}
    settings = {"lm_eval": str(raw.get("lm_eval_version", "")), "gen_kwargs": str(gen_kwargs(p, backend))}
    return SuiteOutcome(_task_results(raw, names), samples, warnings, settings)
