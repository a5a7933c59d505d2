"""The progress endpoint: its pure half (paths, tokens, stale and future reports, the loss history) and
the refusals it makes before it looks anything up (a real aiohttp server, no Kubernetes API at all)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from kaizen_api.finetune_status import LossPoint, RunStatus
from kaizen_api.results import ProgressReport
from kaizen_operator import endpoints
from kaizen_operator.admission import validation_message
from kaizen_operator.context import Context
from kaizen_operator.kube import path_of
from kaizen_operator.progress import (
    RateLimiter,
    apply_report,
    bearer_token,
    downsample,
    is_stale,
    loss_not_finite_event,
    path_problem,
    run_token,
    time_problem,
    token_matches,
    token_well_formed,
)
from pydantic import ValidationError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = "pipe-20240101120000-abcdef"
# What aiohttp hands over for `..%2F..%2F..%2Fsecrets%3Flimit=500%26x=` in the path.
ESCAPE = "../../../secrets?limit=500&x="


def test_tokens_authorise_one_run_of_one_pipeline_object() -> None:
    key = b"k" * 32
    token = run_token(key, "ns", "run-a", "uid-1")
    assert token_matches(key, token, "ns", "run-a", "uid-1")
    assert not token_matches(key, token, "ns", "run-b", "uid-1")
    assert not token_matches(key, token, "ns", "run-a", "uid-2")  # a re-created pipeline
    assert not token_matches(b"x" * 32, token, "ns", "run-a", "uid-1")


def test_only_a_token_of_the_right_form_is_checked() -> None:
    assert bearer_token("Bearer  abc ") == "abc"
    assert bearer_token("Bearer ") is None and bearer_token("Basic abc") is None and bearer_token("") is None
    assert token_well_formed(run_token(b"k" * 32, "ns", "run-a", "uid-1"))
    not_utf8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # how aiohttp hands such a header over
    for presented in ("not-a-token", "A" * 64, "a" * 63, not_utf8, "\u00e9" * 64):
        assert not token_well_formed(presented)
        assert not token_matches(b"k" * 32, presented, "ns", "run-a", "uid-1")


def test_a_report_path_must_name_a_run() -> None:
    assert path_problem("team-a", RUN) is None
    problem = path_problem("team-a", ESCAPE)
    assert problem and problem.startswith("run ")
    assert (path_problem("team-a", "r" * 53) or "").startswith("run ")
    assert (path_problem("Team_A", RUN) or "").startswith("namespace ")
    assert (path_problem("..", RUN) or "").startswith("namespace ")


def test_api_paths_keep_each_name_one_segment() -> None:
    assert path_of("v1", "Secret", "team-a", "run-token") == "/api/v1/namespaces/team-a/secrets/run-token"
    escaped = path_of("v1", "Secret", "team-a", f"{ESCAPE}-token")
    assert escaped == "/api/v1/namespaces/team-a/secrets/..%2F..%2F..%2Fsecrets%3Flimit%3D500%26x%3D-token"
    with pytest.raises(ValueError):
        path_of("v1", "Secret", "..", "x")


def test_rate_limit_and_stale_reports() -> None:
    limiter = RateLimiter(interval_s=1.0, burst=2)
    assert [limiter.allow("r", now=0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("r", now=1.5)
    first = ProgressReport.model_validate(
        {
            "runName": "r",
            "progress": {"step": 2, "updatedTime": "2026-12-01T12:00:10Z"},
            "metrics": {"trainTotalLoss": 2.0},
        }
    )
    run = apply_report(RunStatus(name="r", phase="Running"), first)
    assert run.loss_history == [LossPoint(step=2, loss=2.0)]
    applied = run.progress.updated_time if run.progress else None
    assert is_stale(applied, applied)
    assert is_stale(applied, NOW)  # older
    assert not is_stale(applied, NOW + timedelta(minutes=1))
    assert is_stale(applied, None)  # no time: never newer than a report with one (eval reports too)
    assert not is_stale(None, None) and not is_stale(None, NOW)


def test_a_non_finite_loss_is_flagged_once_per_run_from_status() -> None:
    """The report that first records nonFiniteLossStep gives the Warning; later reports (the runner
    repeats the step in each), and a restarted operator applying them, find it recorded already."""

    def report(step: int, **metrics: object) -> ProgressReport:
        progress = {"step": step, "updatedTime": f"2026-12-01T12:00:{step:02d}Z"}
        return ProgressReport.model_validate({"runName": "r", "progress": progress, "metrics": metrics})

    run = RunStatus(name="r", phase="Running")
    events = []
    for sent in (
        report(1, trainTotalLoss=2.0),
        report(2, trainTotalLoss=2.0, nonFiniteLossStep=2),
        report(3, nonFiniteLossStep=2),
        report(4, trainTotalLoss=1.5, nonFiniteLossStep=2),
    ):
        applied = apply_report(run, sent)
        events.append(loss_not_finite_event(run, applied))
        run = RunStatus.model_validate(applied.to_manifest())  # as the next pass reads it back
    assert events[0] is None and events[2:] == [None, None]
    assert events[1] is not None
    type_, reason, message = events[1]
    assert (type_, reason) == ("Warning", "LossNotFinite")
    assert message.startswith("run r: the loss was NaN or infinite at step 2;")
    assert run.metrics and run.metrics.non_finite_loss_step == 2 and run.metrics.train_total_loss == 1.5
    # A report without metrics leaves the recorded step alone: still no second Event.
    assert loss_not_finite_event(run, apply_report(run, report(5))) is None


def test_report_times_must_carry_a_zone() -> None:
    for body in (
        {"runName": "r", "progress": {"step": 1, "updatedTime": "2026-12-01T12:00:00"}},
        {"runName": "r", "evalProgress": {"done": 1, "updatedTime": "2026-12-01T12:00:00"}},
    ):
        with pytest.raises(ValidationError) as info:
            ProgressReport.model_validate(body)
        assert "updatedTime" in validation_message(info.value, "")
    aware = {"runName": "r", "progress": {"step": 1, "updatedTime": "2026-12-01T12:00:00+02:00"}}
    assert ProgressReport.model_validate(aware).progress


def test_a_report_from_the_future_is_refused() -> None:
    def report(when: datetime, field: str = "progress") -> ProgressReport:
        return ProgressReport.model_validate({"runName": "r", field: {"updatedTime": when.isoformat()}})

    assert time_problem(report(NOW + timedelta(minutes=4)), NOW) is None
    assert time_problem(ProgressReport(run_name="r"), NOW) is None
    assert (time_problem(report(NOW + timedelta(minutes=6)), NOW) or "").startswith("progress.updatedTime ")
    eval_problem = time_problem(report(NOW + timedelta(days=1), "evalProgress"), NOW)
    assert (eval_problem or "").startswith("evalProgress.updatedTime ")


def test_loss_history_is_bounded_and_keeps_the_ends() -> None:
    points = [LossPoint(step=i, loss=float(i)) for i in range(200)]
    kept = downsample(points, 50)
    assert len(kept) <= 50 and kept[0].step == 0 and kept[-1].step == 199


@pytest.mark.parametrize("steps", [range(1, 10_001), range(1, 20_001, 2), range(37, 370_000, 37)])
def test_loss_history_keeps_the_whole_curve_when_points_arrive_one_at_a_time(steps: range) -> None:
    history: list[LossPoint] = []
    for step in steps:
        history = downsample([*history, LossPoint(step=step, loss=1.0)], 50)
    kept = [p.step for p in history]
    assert len(kept) == 50 and kept[0] == steps[0] and kept[-1] == steps[-1]
    even = (steps[-1] - steps[0]) / 49
    assert max(b - a for a, b in zip(kept, kept[1:], strict=False)) < 2 * even


def exchange(ctx: Context, path: str, headers: bytes, body: bytes = b"{}") -> tuple[int, bytes]:
    """The status and body of one POST to a real progress server on 127.0.0.1, sent as raw bytes."""

    async def send() -> tuple[int, bytes]:
        server = TestServer(endpoints.progress_app(ctx, RateLimiter()), host="127.0.0.1")
        await server.start_server()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode()
                + headers
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, content = answer.partition(b"\r\n\r\n")
            return int(head.split()[1]), content
        finally:
            await server.close()

    return asyncio.run(send())


def post(ctx: Context, path: str, headers: bytes) -> int:
    return exchange(ctx, path, headers)[0]


def test_requests_that_name_no_run_or_carry_no_real_token_cost_no_lookup() -> None:
    # No Kubernetes API at all: a request that looked a run up would fail with a 500.
    none: Any = None
    ctx = Context(kube=none, settings=none, catalog=none, key=b"k" * 32)
    good = f"Authorization: Bearer {'a' * 64}\r\n".encode()
    assert post(ctx, "/runs/team-a/..%2F..%2F..%2Fsecrets%3Flimit=500%26x=", good) == 400
    assert post(ctx, "/evalruns/kube-system/..%2F..%2Fsecrets%3Fx=", good) == 400
    assert post(ctx, f"/runs/Team_A/{RUN}", good) == 400
    assert post(ctx, f"/runs/team-a/{RUN}", b"") == 401
    assert post(ctx, f"/runs/team-a/{RUN}", b"Authorization: Bearer not-a-token\r\n") == 403
    assert post(ctx, f"/evalruns/team-a/{RUN}", b"Authorization: Bearer \xff\xfe\r\n") == 403
    ctx.secret_reads = RateLimiter(burst=0)  # a flood of well-formed tokens spent the lookups
    assert post(ctx, f"/runs/team-a/{RUN}", good) == 429
    assert post(ctx, f"/evalruns/team-a/{RUN}", good) == 429


@pytest.mark.parametrize(
    ("number", "field"),
    [
        ('"metrics": {"trainTotalLoss": NaN}', "metrics.trainTotalLoss"),
        ('"metrics": {"evalTotalLoss": -Infinity}', "metrics.evalTotalLoss"),
        ('"progress": {"step": 3, "epoch": Infinity}', "progress.epoch"),
        ('"progress": {"step": 18446744073709551616}', "progress.step"),  # beyond the CRD's int64
    ],
)
def test_a_report_with_a_number_json_cannot_hold_is_refused_naming_it(number: str, field: str) -> None:
    """Python's JSON parser reads NaN, Infinity and integers of any size; no status can hold them (the
    API server refused the patch, and the runner was told to try again). Refused before the run is
    read: this Context has no Kubernetes API, so applying the report would answer 500."""
    none: Any = None
    ctx = Context(kube=none, settings=none, catalog=none, key=b"k" * 32)
    ctx.run_index[("team-a", RUN)] = ("pipe", "uid-1")
    token = run_token(ctx.key, "team-a", RUN, "uid-1")
    body = f'{{"runName": "r", {number}}}'.encode()
    status, answer = exchange(ctx, f"/runs/team-a/{RUN}", f"Authorization: Bearer {token}\r\n".encode(), body)
    assert status == 400, answer
    assert json.loads(answer)["error"].startswith(f"{field} is ")


def test_the_report_counters_help_names_every_outcome_the_endpoint_counts() -> None:
    """`kaizen_progress_reports_total`'s help lists the values of its `outcome` label."""
    import inspect
    import re

    from kaizen_operator.metrics import PROGRESS_REPORTS

    source = inspect.getsource(endpoints)
    outcomes = set(re.findall(r'Refused\(\d+, "(\w+)"', source))
    outcomes |= set(re.findall(r'PROGRESS_REPORTS\.labels\("(\w+)"\)', source))
    outcomes |= {"accepted", "stale"}  # labels("accepted" if applied else "stale")
    assert {"unknown_run", "error", "invalid"} <= outcomes, "the source no longer reads as expected"
    named = set(re.findall(r"\w+", PROGRESS_REPORTS._documentation.partition("(")[2]))
    assert outcomes <= named, f"not in the help text: {sorted(outcomes - named)}"
