"""Run names (display and object) and child names: the SPEC's form, DNS-1123, deterministic."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from kaizen_operator.naming import (
    RUN_NAME_MAX,
    ChildNames,
    cronjob_name,
    is_template,
    run_display_name,
    run_object_name,
)

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
WHEN = datetime(2025, 5, 8, 12, 40, 54, tzinfo=UTC)


def test_display_name_follows_the_spec() -> None:
    assert run_display_name("Llama-3.1-8B", WHEN) == "ft_Llama-3.1-8B_20250508124054"
    assert run_display_name("Llama-3.1-8B", WHEN, template=True) == "ft_Llama-3.1-8B_20250508124054_template"
    # Another zone is converted to UTC; a naive time is UTC.
    tokyo = WHEN.astimezone(timezone(timedelta(hours=9)))
    assert run_display_name("Llama-3.1-8B", tokyo) == "ft_Llama-3.1-8B_20250508124054"
    assert run_display_name("Llama-3.1-8B", WHEN.replace(tzinfo=None)).endswith("_20250508124054")
    # A hub id or a private model's name with odd characters keeps only its last segment, sanitised.
    assert run_display_name("Qwen/Qwen2.5-0.5B-Instruct", WHEN) == "ft_Qwen2.5-0.5B-Instruct_20250508124054"


def test_a_long_model_name_is_cut_and_hashed_within_the_version_name_limit() -> None:
    """A PrivateModel's name may have 253 characters, a URI's last segment more: the display name is
    RunStatus.name and the version's name (both at most 253) and still names the model and the time."""
    longest = run_display_name("m" * 300, WHEN, template=True)
    assert len(longest) == 253 and longest.startswith("ft_mmm")
    assert longest.endswith("_20250508124054_template")
    assert run_display_name("m" * 300, WHEN) == run_display_name("m" * 300, WHEN)
    assert run_display_name("m" * 300, WHEN) != run_display_name("m" * 299, WHEN)
    assert len(run_display_name("m" * 226, WHEN, template=True)) == 253  # kept whole
    assert "m" * 226 in run_display_name("m" * 226, WHEN)
    assert run_object_name("p", run_display_name("m" * 300, WHEN)).startswith("p-20250508124054-")


@pytest.mark.parametrize(
    "pipeline",
    ["sft-alpaca", "9lives", "a.b.c", "x" * 253, "pipeline-with-a-very-long-name-that-goes-on-and-on"],
)
def test_object_names_are_short_dns_labels_and_deterministic(pipeline: str) -> None:
    display = run_display_name("Llama-3.1-8B", WHEN)
    name = run_object_name(pipeline, display)
    assert DNS1035.match(name) and len(name) <= RUN_NAME_MAX, name
    assert name == run_object_name(pipeline, display)
    assert "20250508124054" in name
    children = ChildNames.of(name)
    for child in (children.config_map, children.token_secret, children.preflight_job, children.job):
        assert DNS1035.match(child) and len(child) <= 63, child
    assert len(f"{children.job}-15") <= 63  # Indexed Job pod hostnames
    cron = cronjob_name(pipeline)
    assert DNS1035.match(cron) and len(cron) <= 52


def test_distinct_inputs_give_distinct_names() -> None:
    display = run_display_name("Llama-3.1-8B", WHEN)
    long_a, long_b = "p" * 60 + "-a", "p" * 60 + "-b"
    assert run_object_name(long_a, display) != run_object_name(long_b, display)
    assert run_object_name("p", display) != run_object_name("p", display + "_template")
    later = run_display_name("Llama-3.1-8B", WHEN + timedelta(seconds=1))
    assert run_object_name("p", display) != run_object_name("p", later)
    assert cronjob_name(long_a) != cronjob_name(long_b)


def test_template_is_a_label() -> None:
    assert is_template({"metadata": {"labels": {"kaizen.dev/template": "true"}}})
    assert not is_template({"metadata": {"labels": {"kaizen.dev/template": "false"}}})
    assert not is_template({"metadata": {}})


LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_long_names_become_valid_label_values_and_volume_names() -> None:
    from kaizen_operator.naming import label_value
    from kaizen_operator.resolve import volume_name

    long_a, long_b = "a." * 120 + "x", "a." * 120 + "y"
    for name in (long_a, long_b, "short-name"):
        value = label_value(name)
        assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert label_value("short-name") == "short-name"
    assert label_value(long_a) != label_value(long_b)
    for kind, name in (("pvc", long_a), ("conn", "datahub"), ("pvc", "9-uploads")):
        volume = volume_name(kind, name)
        assert len(volume) <= 63 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", volume), volume
    assert volume_name("pvc", long_a) != volume_name("pvc", long_b)
