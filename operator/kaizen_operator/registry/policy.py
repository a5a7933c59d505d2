"""The IP allow-list as a bucket policy: one statement per PrivateModel, merged into the bucket's policy.

The statement denies `s3:GetObject` and `s3:GetObjectVersion` (a versioned bucket's older versions) on
the model's prefix to every address outside the list (an `aws:SourceIp` condition), so it holds for
every credential, in and outside Kaizen. Other statements of the bucket's policy are kept as they are;
an emptied list removes the statement, and the policy itself when nothing else is left. The policy is
one document per bucket that S3 cannot update conditionally, so the operator (a single leader)
serialises its edits of one bucket. Whether downloads are then restricted is up to the storage: AWS S3
and MinIO enforce `aws:SourceIp`; a server that does not keep bucket policies is reported as such.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

POLICY_VERSION = "2012-10-17"
_bucket_locks: dict[tuple[str, str], threading.Lock] = {}
_bucket_locks_guard = threading.Lock()


def statement_id(namespace: str, name: str) -> str:
    """A Sid unique to one PrivateModel (Sids allow letters and digits only)."""
    readable = re.sub(r"[^A-Za-z0-9]", "", f"{namespace}{name}")[:48]
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:12]
    return f"KaizenPrivateModel{readable}{digest}"


def cidr(entry: str) -> str:
    """`192.168.0.0` -> `192.168.0.0/32`; ranges stay as written."""
    return entry if "/" in entry else f"{entry}/32"


def allow_list_statement(sid: str, bucket: str, prefix: str, allow: list[str]) -> dict[str, Any]:
    """Deny reading the model's files from any address outside `allow`."""
    folder = prefix.strip("/")
    resource = f"arn:aws:s3:::{bucket}/{folder}/*" if folder else f"arn:aws:s3:::{bucket}/*"
    return {
        "Sid": sid,
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
        "Resource": [resource],
        "Condition": {"NotIpAddress": {"aws:SourceIp": sorted({cidr(a) for a in allow})}},
    }


def _statements(policy: dict[str, Any] | None) -> list[Any]:
    statements = (policy or {}).get("Statement") or []
    return [statements] if isinstance(statements, dict) else list(statements)


def merged_policy(current: dict[str, Any] | None, sid: str, statement: dict[str, Any] | None) -> dict | None:
    """The bucket policy with this model's statement replaced (or removed when `statement` is None);
    None when no statement is left, i.e. the policy should be deleted."""
    current = current or {}
    others = [s for s in _statements(current) if not (isinstance(s, dict) and s.get("Sid") == sid)]
    merged = others + ([statement] if statement is not None else [])
    if not merged:
        return None
    return {**current, "Version": current.get("Version", POLICY_VERSION), "Statement": merged}


@dataclass(frozen=True)
class PolicyOutcome:
    """What applying the allow-list did: `enforced` False when the storage kept no policy."""

    enforced: bool
    changed: bool
    message: str


def _read_policy(client: Any, bucket: str) -> dict[str, Any] | None:
    try:
        raw = client.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchBucketPolicy", "NoSuchPolicy"):
            return None
        raise
    policy = json.loads(raw)
    if not isinstance(policy, dict):
        raise ValueError("the bucket policy is not a JSON object")
    return policy


def bucket_lock(endpoint: str, bucket: str) -> threading.Lock:
    """The lock of one bucket's policy: kopf runs handlers of different models in parallel threads, and
    two read-modify-writes of the same policy at once would each drop the other's statement."""
    with _bucket_locks_guard:
        return _bucket_locks.setdefault((endpoint, bucket), threading.Lock())


def _own(policy: dict[str, Any] | None, sid: str) -> Any:
    return next((s for s in _statements(policy) if isinstance(s, dict) and s.get("Sid") == sid), None)


def apply_allow_list(client: Any, bucket: str, sid: str, statement: dict[str, Any] | None) -> PolicyOutcome:
    """Merge the statement into the bucket's policy through boto3, one edit of a bucket at a time, and
    read the policy back to confirm it holds the statement (or no longer does)."""
    try:
        with bucket_lock(str(client.meta.endpoint_url), bucket):
            current = _read_policy(client, bucket)
            wanted = merged_policy(current, sid, statement)
            if wanted == current:
                return PolicyOutcome(
                    statement is None or current is not None, False, "bucket policy up to date"
                )
            if wanted is None:
                client.delete_bucket_policy(Bucket=bucket)
            else:
                client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(wanted))
            if _own(_read_policy(client, bucket), sid) != statement:
                raise ValueError("the policy read back does not hold the statement as written")
    except (ClientError, BotoCoreError, ValueError) as exc:
        return PolicyOutcome(False, False, f"the storage does not keep bucket policies ({exc})")
    if statement is None:
        return PolicyOutcome(True, True, "allow-list removed from the bucket policy")
    return PolicyOutcome(True, True, f"bucket policy restricts downloads of s3://{bucket} to the allow-list")
