"""`kaizen-runner data validate`: report on stdout, exit status 0 usable / 1 unusable / 2 usage."""

from __future__ import annotations

import json

import pytest
import yaml
from kaizen_runner.cli import main

from .test_samples import sample

CHAT_TEST = "sharegpt/sharegpt_chat_test_mini.json"
DPO_VAL = "sharegpt-dpo/dpo_agrilla_en_val_sharegpt_mini.json"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", "validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_usable_data_prints_the_report_and_exits_0(capsys):
    code, out, err = run(capsys, "--format", "ShareGPT", str(sample(CHAT_TEST)))
    assert code == 0 and err == ""
    assert "100 records, 98 usable, 2 skipped" in out
    assert "[empty_turn] record 21: 'conversations[0]' is an empty 'human' turn" in out


def test_json_report(capsys):
    code, out, _ = run(capsys, "--format", "dpo", "--json", str(sample(DPO_VAL)))
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert (report["format"], report["usable"], report["skipped"]) == ("preference", 98, 2)
    assert report["counts_by_reason"] == {"placeholder_record": 1, "unknown_role": 1}
    assert [e["index"] for e in report["examples"]] == [0, 1]


def test_strict_exits_1_with_report_and_error(capsys):
    code, out, err = run(capsys, "--format", "preference", "--strict", str(sample(DPO_VAL)))
    assert code == 1
    assert "98 usable, 2 skipped" in out
    assert err.startswith("error: ") and "strict mode" in err and "Traceback" not in err


def test_strict_json_failure(capsys):
    code, out, _ = run(capsys, "--format", "preference", "--strict", "--json", str(sample(DPO_VAL)))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["error"]["reason"] == "strict_violation"
    assert report["usable"] == 98


def test_wrong_format_is_unusable(capsys):
    code, out, err = run(capsys, "--format", "corpus", str(sample(CHAT_TEST)))
    assert code == 1 and "no usable records" in err and "look like sharegpt data" in err


def test_error_without_a_report_in_json(capsys, tmp_path):
    code, out, _ = run(capsys, "--format", "alpaca", "--json", str(tmp_path / "missing.json"))
    body = json.loads(out)
    assert code == 1 and body["ok"] is False and body["error"]["reason"] == "source_not_found"


def test_unknown_format(capsys):
    code, _, err = run(capsys, "--format", "excel", str(sample(CHAT_TEST)))
    assert code == 1 and "unknown data format 'excel'" in err


def test_max_length_skips_long_records(capsys):
    code, out, _ = run(
        capsys,
        "--format",
        "alpaca",
        "--max-length",
        "2000",
        "--json",
        str(sample("alpaca/alpaca_test_mini.json")),
    )
    report = json.loads(out)
    assert code == 0 and report["counts_by_reason"]["too_long"] == report["skipped"] > 0


def test_max_length_must_be_positive(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["data", "validate", "--format", "alpaca", "--max-length", "0", "x.json"])
    assert caught.value.code == 2


@pytest.mark.s3
def test_s3_source_with_a_secret_file(capsys, tmp_path, s3_server, s3_bucket):
    s3_server.client().upload_file(str(sample(CHAT_TEST)), s3_bucket, "chat.json")
    secret_file = tmp_path / "secret.yaml"
    secret_file.write_text(yaml.safe_dump(s3_server.secret()))
    code, out, _ = run(
        capsys, "--format", "sharegpt", "--secret-file", str(secret_file), f"s3://{s3_bucket}/chat.json"
    )
    assert code == 0 and "98 usable" in out

    bad = s3_server.secret()
    bad["stringData"]["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-key-wrong-secret-key-000"
    secret_file.write_text(yaml.safe_dump(bad))
    code, _, err = run(
        capsys, "--format", "sharegpt", "--secret-file", str(secret_file), f"s3://{s3_bucket}/chat.json"
    )
    assert code == 1 and "access denied" in err


def test_bad_secret_file(capsys, tmp_path):
    secret_file = tmp_path / "secret.yaml"
    secret_file.write_text("kind: Secret\nstringData: {AWS_ACCESS_KEY_ID: a}\n")
    code, _, err = run(capsys, "--format", "alpaca", "--secret-file", str(secret_file), "s3://b/k.json")
    assert code == 1 and "lacks AWS_ENDPOINT_URL" in err


def test_a_broken_secret_file_is_reported_by_position_without_its_content(capsys, tmp_path):
    secret_file = tmp_path / "secret.yaml"
    key = "wJalrXUtnFEMI-K7MDENG"
    lines = [
        "kind: Secret",
        "stringData:",
        "  AWS_ACCESS_KEY_ID: AKIA",
        f"  AWS_SECRET_ACCESS_KEY: {key[:5]}: {key[5:]}",
    ]
    secret_file.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "--format", "alpaca", "--secret-file", str(secret_file), "s3://b/k.json")
    assert code == 1 and f"{secret_file} is not valid YAML at line 4, column " in err
    assert "wJalr" not in out + err and "XUtn" not in out + err
