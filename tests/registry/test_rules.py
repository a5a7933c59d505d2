"""Pure rules of the registry: share RBAC manifests, the delete decision, who uses a model, and which
version other controllers may use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from api.manifests import apply, load_example
from kaizen_api.privatemodel import Share
from kaizen_local.paths import SHARING_POLICY_FILE
from kaizen_operator.registry.deletion import deletion_decision, model_users
from kaizen_operator.registry.rbac import (
    SHARE_VERB,
    VERBS,
    share_binding,
    share_name,
    share_role,
    unique_shares,
)
from kaizen_operator.registry.usable import ModelNotReady, ready_version

MODEL = {"metadata": {"name": "support", "namespace": "team-a", "uid": "u-1"}}


def test_a_share_is_a_role_on_this_model_only_and_a_binding_to_the_user() -> None:
    share = Share(email="ana@example.com", tenant="team-a", role="editor")
    role = share_role(MODEL, share, "2026-12-01T00:00:00Z")
    assert role["rules"] == [
        {
            "apiGroups": ["kaizen.dev"],
            "resources": ["privatemodels"],
            "resourceNames": ["support"],
            "verbs": ["get", "list", "watch", "update", "patch"],
        }
    ]
    assert role["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    binding = share_binding(MODEL, share, "2026-12-01T00:00:00Z", "{tenant}:{email}")
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "team-a:ana@example.com"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == share_name("support", share)
    owner = share_role(MODEL, share.model_copy(update={"role": "owner"}), "t")
    assert owner["rules"][0]["verbs"][-2:] == ["delete", "share"]
    assert owner["metadata"]["name"] == role["metadata"]["name"]


def test_long_model_names_sharing_their_first_200_characters_get_apart_roles() -> None:
    """A Role's name keeps at most 200 characters of the model's name: two models alike up to there,
    shared with the same user, would otherwise share one Role (and one would lose it with the other)."""
    share = Share(email="ana@example.com", tenant="team-a", role="viewer")
    stem = "m" * 198 + ".a"
    names = {share_name(stem + tail, share) for tail in ("-first", "-second", ".x")}
    assert len(names) == 3
    for name in names:  # a DNS subdomain: at most 253, no label that ends in '.' or '-'
        assert len(name) <= 253 and all(label and label[-1].isalnum() for label in name.split("."))
    assert share_name("support", share).startswith("kaizen-pm-support-"), "short names are unchanged"


def test_only_an_owner_share_grants_the_verb_the_sharing_policy_checks() -> None:
    """The admission policy (the chart's file, which the local cluster installs too) asks the
    authorizer for the verb only owner shares grant, and only when spec.sharing changes (on create,
    from none)."""
    policy = yaml.safe_load(SHARING_POLICY_FILE.read_text())
    (validation,) = policy["spec"]["validations"]
    assert f".check('{SHARE_VERB}').allowed()" in validation["expression"]
    assert validation["expression"].startswith("variables.sharing == variables.oldSharing ||")
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["kaizen.dev"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["privatemodels"],
        }
    ]
    assert [role for role, verbs in VERBS.items() if SHARE_VERB in verbs] == ["owner"]


def test_one_share_per_user_the_last_one_wins() -> None:
    shares = [
        Share(email="a@x.io", tenant="t", role="viewer"),
        Share(email="A@x.io", tenant="t", role="owner"),
    ]
    assert [s.role for s in unique_shares(shares)] == ["owner"]


@pytest.mark.parametrize(
    "policy,annotations,users,expected",
    [
        ("Retain", {}, [], (True, False, "Retained")),
        ("Delete", {}, [], (False, False, "ConfirmationMissing")),
        ("Delete", {"kaizen.dev/confirm-delete": "other"}, [], (False, False, "ConfirmationMissing")),
        ("Delete", {"kaizen.dev/confirm-delete": "support"}, [], (True, True, "FilesDeleted")),
        ("Delete", {"kaizen.dev/confirm-delete": "support"}, ["EvalJob e"], (False, False, "InUse")),
        ("Retain", {}, ["EvalJob e"], (False, False, "InUse")),
    ],
)
def test_delete_decision(policy, annotations, users, expected) -> None:
    decision = deletion_decision("support", policy, annotations, users)
    assert (decision.proceed, decision.delete_files, decision.reason) == expected


def test_users_are_running_pipelines_and_unfinished_eval_jobs() -> None:
    ref = {"privateModel": {"name": "support"}}
    pipelines = [
        {
            "metadata": {"name": "p1"},
            "spec": {"baseModel": ref},
            "status": {"currentRun": {"name": "r", "phase": "Running"}},
        },
        {"metadata": {"name": "p2"}, "spec": {"output": {"privateModel": "support"}}, "status": {}},
        {
            "metadata": {"name": "p3"},
            "spec": {"output": {"privateModel": "other"}},
            "status": {"currentRun": {"name": "r"}},
        },
    ]
    jobs = [
        {"metadata": {"name": "e1"}, "spec": {"model": ref}, "status": {"phase": "Running"}},
        {"metadata": {"name": "e2"}, "spec": {"model": ref}, "status": {"phase": "Succeeded"}},
    ]
    assert model_users("support", pipelines, jobs, {}) == ["FineTunePipeline p1 (run r)", "EvalJob e1"]


def test_an_eval_job_of_a_pipeline_run_uses_the_pipeline_s_output_model() -> None:
    pipelines = [
        {"metadata": {"name": "sft"}, "spec": {"output": {"privateModel": "support"}}, "status": {}},
        {"metadata": {"name": "dpo"}, "spec": {"output": {"privateModel": "other"}}, "status": {}},
    ]
    jobs = [
        {"metadata": {"name": name}, "spec": {"model": {"pipelineRun": {"pipeline": p}}}, "status": status}
        for name, p, status in (
            ("e1", "sft", {"phase": "Running"}),
            ("e2", "sft", {}),
            ("e3", "sft", {"phase": "Succeeded"}),
            ("e4", "dpo", {"phase": "Running"}),
            ("e5", "gone", {"phase": "Running"}),
        )
    ]
    assert model_users("support", pipelines, jobs, {}) == ["EvalJob e1", "EvalJob e2"]


def _finished_eval(token: str | None, **changes: object) -> dict:
    """The example EvalJob (on model support-assistant) whose one run, for runToken `token`, succeeded."""
    job = apply(load_example("evaljob-standard.yaml"), dict(changes))
    run = {"runName": "testj-1", "phase": "Succeeded", **({"runToken": token} if token else {})}
    return {**job, "status": {"phase": "Succeeded", "runs": [run]}}


def test_an_eval_job_whose_run_token_changed_uses_the_model_until_the_new_run_is_recorded() -> None:
    jobs = [
        {**_finished_eval(None), "metadata": {"name": "same"}},
        {**_finished_eval("a", **{"spec.runToken": "a"}), "metadata": {"name": "same-token"}},
        {**_finished_eval(None, **{"spec.runToken": "again"}), "metadata": {"name": "changed"}},
        {**_finished_eval("a", **{"spec.runToken": "b"}), "metadata": {"name": "changed-again"}},
        # never runs: an invalid spec, or a job being deleted
        {**_finished_eval(None, **{"spec.runToken": "x", "spec.suite": "nope"}), "metadata": {"name": "bad"}},
        {
            **_finished_eval(None, **{"spec.runToken": "x"}),
            "metadata": {"name": "going", "deletionTimestamp": "2026-12-01T00:00:00Z"},
        },
    ]
    users = model_users("support-assistant", [], jobs, {})
    requested = "(a run requested by spec.runToken is not recorded yet)"
    assert users == [f"EvalJob changed {requested}", f"EvalJob changed-again {requested}"]
    assert model_users("other", [], jobs, {}) == []


def _finished_pipeline(last_token: str | None, **changes: object) -> dict:
    """The example pipeline (output support-assistant) whose newest manual run, for `last_token`, ended."""
    doc = apply(load_example("finetune-sft-alpaca.yaml"), dict(changes))
    status = {} if last_token is None else {"observedGeneration": 1, "lastRunToken": last_token}
    return {**doc, "status": status}


def test_a_pipeline_whose_run_token_changed_uses_its_models_until_the_new_run_is_recorded() -> None:
    private_base = {"spec.baseModel": {"privateModel": {"name": "base"}}}
    pipelines = [
        {**_finished_pipeline(""), "metadata": {"name": "done"}},
        {**_finished_pipeline("", **{"spec.trigger.runToken": "2"}), "metadata": {"name": "rerun"}},
        {**_finished_pipeline(None), "metadata": {"name": "new"}},
        {
            **_finished_pipeline("1", **{"spec.trigger.runToken": "2"}, **private_base),
            "metadata": {"name": "b"},
        },
        {
            **_finished_pipeline("", **{"spec.trigger.runToken": "2", "spec.trigger.suspend": True}),
            "metadata": {"name": "suspended"},
        },
        {
            **_finished_pipeline("", **{"spec.trigger.runToken": "2", "spec.hyperparameters.epochs": 0}),
            "metadata": {"name": "bad"},
        },
    ]
    requested = "(a run requested by spec.trigger.runToken is not recorded yet)"
    assert model_users("support-assistant", pipelines, [], {}) == [
        f"FineTunePipeline rerun {requested}",
        f"FineTunePipeline new {requested}",
        f"FineTunePipeline b {requested}",
    ]
    assert model_users("base", pipelines, [], {}) == [f"FineTunePipeline b {requested}"]


STATUS = {
    "versions": [
        {"index": 0, "name": "v1", "status": "ready", "ready": True},
        {"index": 1, "name": "v2", "status": "created", "ready": False, "missing": ["tokenizer.json"]},
        {"index": 2, "name": "v3", "status": "uploading", "ready": False, "message": "upload in progress"},
    ]
}


def test_only_ready_versions_can_be_used() -> None:
    assert ready_version(STATUS, "v1").name == "v1"
    assert ready_version(STATUS).name == "v1", "the newest ready version when none is named"
    with pytest.raises(ModelNotReady, match="missing tokenizer.json") as caught:
        ready_version(STATUS, "v2")
    assert caught.value.missing == ["tokenizer.json"]
    with pytest.raises(ModelNotReady, match="upload in progress"):
        ready_version(STATUS, "v3")
    with pytest.raises(ModelNotReady, match="not in the registry"):
        ready_version(STATUS, "v9")
    with pytest.raises(ModelNotReady, match="no ready version"):
        ready_version({})


def test_volume_storage_is_read_where_the_claim_is_mounted(tmp_path) -> None:
    from kaizen_api.common import OutputStorage
    from kaizen_operator.registry.storage import LocalModelStorage, open_storage
    from kaizen_runner.storage import StorageError

    storage = OutputStorage.model_validate({"pvc": {"claimName": "models", "path": "team/support"}})
    with pytest.raises(
        StorageError, match=r"'models' is not mounted into the operator.*KAIZEN_VOLUMES_DIR/models"
    ):
        open_storage(storage, lambda name: {}, environ={})
    (tmp_path / "models" / "team" / "support" / "v1").mkdir(parents=True)
    (tmp_path / "models" / "team" / "support" / "v1" / "config.json").write_text("{}")
    opened = open_storage(storage, lambda name: {}, environ={"KAIZEN_VOLUMES_DIR": str(tmp_path)})
    assert isinstance(opened, LocalModelStorage)
    assert [f.path for f in opened.list()] == ["v1/config.json"]


def test_what_wakes_an_event_driven_scan() -> None:
    from kaizen_operator.handlers.privatemodel import _wants_scan

    scanned = {"versions": [{"name": "v", "scannedTime": "2026-12-01T00:00:00Z"}], "observedRescan": "1"}
    assert not _wants_scan(scanned, {"annotations": {"kaizen.dev/rescan": "1"}}), "our own status patch"
    assert _wants_scan(scanned, {"annotations": {"kaizen.dev/rescan": "2"}}), "a new rescan request"
    assert _wants_scan({"versions": [{"name": "ft_1", "status": "training"}]}, {}), "a run recorded a version"
    assert not _wants_scan({"versions": [{"name": "ft_1"}]}, {"deletionTimestamp": "now"})
    now = datetime.now(UTC)
    failed = {"versions": [{"name": "ft_1"}], "scanFailures": 1, "lastScanTime": now.isoformat()}
    assert not _wants_scan(failed, {}), "the failed scan's own status patch waits out the retry delay"
    assert _wants_scan(failed | {"lastScanTime": (now - timedelta(hours=1)).isoformat()}, {})
    assert _wants_scan(failed, {"annotations": {"kaizen.dev/rescan": "2"}}), "an explicit request"
    long_value = "x" * 1000
    assert not _wants_scan(
        {"observedRescan": long_value[:253]}, {"annotations": {"kaizen.dev/rescan": long_value}}
    )
