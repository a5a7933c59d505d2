"""The operator killed with SIGKILL at random points while pipelines start: exactly one workload per run.

The operator runs as a subprocess (`kaizen-operator --namespace <ns>`), started and killed ten times
while pipelines are created; a last start lets every run finish. Each pipeline must end with one
run, Succeeded, and each run with one preflight Job and one training Job.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ftp_support import (
    MODELS,
    PIPELINES,
    REPO,
    fake,
    jobs,
    message,
    operator_env,
    pipeline,
    private_model,
    restrict,
    runs,
)

pytestmark = pytest.mark.cluster
KILLS = 10
OPERATOR = [sys.executable, "-m", "kaizen_operator.main"]


def stuck_state(control_plane: Any, namespace: str, item: dict[str, Any]) -> str:
    """One line per unfinished pipeline: its runs' phase and reason, and their Jobs' conditions."""
    name, found = item["metadata"]["name"], runs(item)
    shown = [f"{name}: {[(r.get('objectName'), r['phase'], r.get('reason')) for r in found]}"]
    for run in found:
        for job in jobs(control_plane, namespace, f"kaizen.dev/run={run['objectName']}"):
            conditions = [c["type"] for c in (job.get("status") or {}).get("conditions") or []]
            meta = job["metadata"]
            shown.append(f"  Job {meta['name']}: created {meta['creationTimestamp']}, {conditions}")
    return "\n".join(shown)


def pass_context(
    control_plane: Any, namespace: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> Any:
    """The namespace made ready for pipelines, and a `Context` to run `reconciler.reconcile` passes in
    this process with `env` (the settings and progress key a subprocess operator started with it has)."""
    from kaizen_operator.catalog import load_catalog
    from kaizen_operator.context import Context
    from kaizen_operator.kube import Kube, load_api_client
    from kaizen_operator.settings import load_settings
    from kubernetes.config import kube_config

    restrict(control_plane, namespace)
    control_plane.request("POST", MODELS.format(namespace), private_model())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(control_plane.kubeconfig))
    settings = load_settings()
    key = env["KAIZEN_PROGRESS_KEY"].encode()
    return Context(Kube(load_api_client()), settings, load_catalog(settings.catalog_path), key)


def test_the_operator_subprocess_runs_this_checkout(tmp_path: Path) -> None:
    """The subprocess imports the code under test, not the copy the interpreter has installed (an
    editable install of another checkout would make these tests check that checkout's operator)."""
    env = operator_env(SimpleNamespace(kubeconfig=tmp_path / "kubeconfig"))
    packages = ("kaizen_api", "kaizen_operator", "kaizen_runner")
    code = f"import {', '.join(packages)}; print({', '.join(p + '.__file__' for p in packages)})"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for path in done.stdout.split():
        assert Path(path).is_relative_to(REPO), f"{path} is not under {REPO}"


def test_sigkill_at_random_points_leaves_one_workload_per_run(
    control_plane, namespace, tmp_path: Path
) -> None:
    restrict(control_plane, namespace)
    control_plane.request("POST", MODELS.format(namespace), private_model())
    env = operator_env(control_plane) | {"PYTHONUNBUFFERED": "1"}
    rng = random.Random(20261201)
    log = (tmp_path / "operator.log").open("ab")
    command = [*OPERATOR, "--namespace", namespace]
    names: list[str] = []
    slow = fake(0, message(phase="Succeeded", metrics={"trainTotalLoss": 0.3}), duration="2s")
    for kill in range(KILLS):
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(2):
            name = f"chaos-{len(names)}"
            control_plane.request("POST", PIPELINES.format(namespace), pipeline(name, workload=slow))
            names.append(name)
        time.sleep(rng.uniform(0.5, 6.0) if kill % 3 else rng.uniform(0.05, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            items = control_plane.request("GET", PIPELINES.format(namespace))["items"]
            done = [p for p in items if runs(p) and all(r["phase"] == "Succeeded" for r in runs(p))]
            if len(done) == len(names):
                break
            assert proc.poll() is None, (tmp_path / "operator.log").read_text()[-4000:]
            if time.monotonic() > deadline:
                stuck = [stuck_state(control_plane, namespace, p) for p in items if p not in done]
                log_tail = (tmp_path / "operator.log").read_text()[-3000:]
                raise AssertionError(
                    f"{len(done)}/{len(names)} pipelines finished; the rest:\n"
                    + "\n".join(stuck)
                    + f"\noperator log:\n{log_tail}"
                )
            time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    for item in items:
        (run,) = runs(item)  # one request (the creation) -> one run, whatever the kills did
        selector = f"kaizen.dev/run={run['objectName']}"
        assert len(jobs(control_plane, namespace, f"{selector},kaizen.dev/component=train")) == 1
        assert len(jobs(control_plane, namespace, f"{selector},kaizen.dev/component=preflight")) == 1
        assert run["metrics"]["trainTotalLoss"] == 0.3
    all_jobs = jobs(control_plane, namespace, "kaizen.dev/component=train")
    assert len(all_jobs) == len(names), "no stray workload for a run that is not on record"


def test_a_first_preflight_created_before_its_record_is_adopted(
    control_plane, namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new pipeline's first preflight Job is created beside the run's record, not after it. A pass
    cut short at that record (here: its status write fails) leaves a Job that no status names; the
    next operator derives the same run from the pipeline and adopts the Job instead of making another."""
    from kaizen_operator import reconciler

    env = operator_env(control_plane) | {"PYTHONUNBUFFERED": "1"}
    ctx = pass_context(control_plane, namespace, monkeypatch, env)
    control_plane.request("POST", PIPELINES.format(namespace), pipeline("cut"))

    def cut_short(*_: object) -> None:
        raise RuntimeError("operator killed at the status write")

    monkeypatch.setattr(reconciler, "patch_status", cut_short)
    with pytest.raises(RuntimeError, match="killed"):
        reconciler.reconcile(ctx, namespace, "cut")
    deadline = time.monotonic() + 10  # the Job's create was under way beside the failed write
    while not (early_jobs := jobs(control_plane, namespace, "kaizen.dev/component=preflight")):
        assert time.monotonic() < deadline, "the pass created no preflight Job beside its record"
        time.sleep(0.2)
    ctx.kube.api.close()
    (early,) = early_jobs
    assert not runs(control_plane.request("GET", f"{PIPELINES.format(namespace)}/cut"))

    log = (tmp_path / "operator.log").open("ab")
    command = [*OPERATOR, "--namespace", namespace]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (recorded := runs(control_plane.request("GET", f"{PIPELINES.format(namespace)}/cut"))):
            alive = proc.poll() is None
            assert time.monotonic() < deadline and alive, (tmp_path / "operator.log").read_text()
            time.sleep(0.5)
        time.sleep(3)  # a second workload, were one made, would be there by now
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    (run,) = recorded
    (preflight,) = jobs(control_plane, namespace, "kaizen.dev/component=preflight")
    assert preflight["metadata"]["uid"] == early["metadata"]["uid"]
    assert preflight["metadata"]["labels"]["kaizen.dev/run"] == run["objectName"]


def test_an_early_preflight_that_ended_before_its_record_is_seen_by_the_pass_that_records_it(
    control_plane, namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass cut short before its record leaves an early preflight Job, which may end before the next
    operator starts: the Job's last event is then gone, and the pass that records the run (and adopts
    the Job) is the last one any event starts. It must look at the Job and go on to the workload, not
    take the run for a new one with nothing to see (that left runs Pending/Preflight for ever)."""
    from kaizen_operator import reconciler

    ctx = pass_context(control_plane, namespace, monkeypatch, operator_env(control_plane))
    control_plane.request("POST", PIPELINES.format(namespace), pipeline("ended"))
    write = reconciler.patch_status

    def cut_short(*_: object) -> None:
        raise RuntimeError("operator killed at the status write")

    monkeypatch.setattr(reconciler, "patch_status", cut_short)
    with pytest.raises(RuntimeError, match="killed"):
        reconciler.reconcile(ctx, namespace, "ended")
    deadline = time.monotonic() + 30
    while not [j for j in jobs(control_plane, namespace, "kaizen.dev/component=preflight") if ended(j)]:
        assert time.monotonic() < deadline, "the early preflight Job did not complete"
        time.sleep(0.2)
    monkeypatch.setattr(reconciler, "patch_status", write)
    try:
        reconciler.reconcile(ctx, namespace, "ended")  # the next operator's pass: records the run
    finally:
        ctx.kube.api.close()
    (run,) = runs(control_plane.request("GET", f"{PIPELINES.format(namespace)}/ended"))
    assert run.get("preflight"), f"the pass did not take in the preflight's plan: {run}"
    train = jobs(control_plane, namespace, f"kaizen.dev/run={run['objectName']},kaizen.dev/component=train")
    assert len(train) == 1, "the pass that recorded the run created no workload, and no event is left"


def ended(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def test_a_recorded_run_missing_its_secret_and_config_map_gets_them(
    control_plane, namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new pipeline's pass creates the run's early preflight Job, then sends its token Secret and
    ConfigMap beside the write of its record. Killed once the record has landed but before those two
    creates reached the API server, it leaves a run whose preflight Job exists and whose pods (on a
    real node) would wait for the two for ever: the next operator adopts the run and creates them."""
    from kaizen_operator import reconciler
    from kaizen_operator.naming import ChildNames
    from kaizen_operator.progress import run_token
    from kaizen_operator.resolve import CONFIG_FILE
    from kaizen_operator.workloads.meta import DISPLAY_NAME_ANNOTATION

    env = operator_env(control_plane) | {"PYTHONUNBUFFERED": "1"}
    ctx = pass_context(control_plane, namespace, monkeypatch, env)
    hold = fake(0, message(phase="Succeeded"), duration="1h")  # the run stays active, its Secret too
    created = control_plane.request("POST", PIPELINES.format(namespace), pipeline("lost", workload=hold))

    def killed(*_: object) -> None:
        raise RuntimeError("operator killed after the record landed")

    monkeypatch.setattr(reconciler.Pass, "advance_runs", killed)
    create = ctx.kube.create
    lost = lambda manifest: manifest["kind"] in ("Secret", "ConfigMap") or create(manifest)  # noqa: E731
    monkeypatch.setattr(ctx.kube, "create", lost)
    with pytest.raises(RuntimeError, match="killed"):
        reconciler.reconcile(ctx, namespace, "lost")
    ctx.kube.api.close()
    (run,) = runs(control_plane.request("GET", f"{PIPELINES.format(namespace)}/lost"))
    names = ChildNames.of(run["objectName"])
    assert jobs(control_plane, namespace, "kaizen.dev/component=preflight"), "the early preflight Job"
    secret = f"/api/v1/namespaces/{namespace}/secrets/{names.token_secret}"
    config_map = f"/api/v1/namespaces/{namespace}/configmaps/{names.config_map}"
    assert not control_plane.exists(secret) and not control_plane.exists(config_map)

    log = (tmp_path / "operator.log").open("ab")
    proc = subprocess.Popen(
        [*OPERATOR, "--namespace", namespace], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while missing := [p for p in (secret, config_map) if not control_plane.exists(p)]:
            assert proc.poll() is None, (tmp_path / "operator.log").read_text()[-4000:]
            assert time.monotonic() < deadline, f"never created: {missing}"
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    token = base64.b64decode(control_plane.request("GET", secret)["data"]["token"]).decode()
    assert token == run_token(ctx.key, namespace, names.run, created["metadata"]["uid"])
    config = control_plane.request("GET", config_map)
    assert config["metadata"]["annotations"][DISPLAY_NAME_ANNOTATION] == run["name"]
    assert json.loads(config["data"][CONFIG_FILE])
