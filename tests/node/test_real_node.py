"""Pods really run on the local cluster's real node: exit codes and termination messages come from the
container, ``kubectl logs``/``exec`` work through the kubelet, pods get service-account tokens, reach
the host and nothing else, and kwok leaves them alone.

Pods here use ``kaizen.local/busybox`` (Debian's static busybox, packed locally; never pulled)."""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from kaizen_local.cluster import wait_for
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.node.kubelet import NODE_NAME
from kaizen_local.node.network import HOST_ADDRESS, POD_SUBNET
from kaizen_local.s3server import S3Server
from kubernetes import client
from kubernetes.stream import stream

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def pod_manifest(cluster: LocalControlPlane, name: str, script: str, **container: Any) -> dict[str, Any]:
    assert cluster.node is not None
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": cluster.node.busybox_image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    **container,
                }
            ],
        },
    }


def create_pod(cluster: LocalControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", manifest)


def pod(cluster: LocalControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")


def wait_phase(cluster: LocalControlPlane, namespace: str, name: str, phases: set[str]) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        current = pod(cluster, namespace, name)
        return current if current.get("status", {}).get("phase") in phases else None

    return wait_for(reached, timeout=90, interval=0.3, what=f"pod {namespace}/{name} in {sorted(phases)}")


def run_to_end(cluster: LocalControlPlane, namespace: str, name: str, script: str) -> dict[str, Any]:
    create_pod(cluster, namespace, pod_manifest(cluster, name, script))
    return wait_phase(cluster, namespace, name, {"Succeeded", "Failed"})


def logs(cluster: LocalControlPlane, namespace: str, name: str) -> str:
    with cluster.api_client() as api:
        return client.CoreV1Api(api).read_namespaced_pod_log(name, namespace)


def exec_in(cluster: LocalControlPlane, namespace: str, name: str, *command: str) -> str:
    with cluster.api_client() as api:
        return stream(
            client.CoreV1Api(api).connect_get_namespaced_pod_exec,
            name,
            namespace,
            command=list(command),
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )


def test_pod_exit_code_and_termination_message_come_from_the_container(
    real_node_cluster: LocalControlPlane, real_node_namespace: str
) -> None:
    ns = real_node_namespace
    script = "echo hello from the real node; printf 'bad input: 7' > /dev/termination-log; exit 7"
    failed = run_to_end(real_node_cluster, ns, "fails", script)
    succeeded = run_to_end(real_node_cluster, ns, "succeeds", "echo fine")

    assert failed["spec"]["nodeName"] == NODE_NAME  # the namespace's annotations sent it there
    assert failed["status"]["phase"] == "Failed"
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (7, "Error")
    assert terminated["message"] == "bad input: 7"
    assert failed["status"]["hostIP"] == HOST_ADDRESS
    assert ipaddress.ip_address(failed["status"]["podIP"]) in ipaddress.ip_network(POD_SUBNET)
    assert logs(real_node_cluster, ns, "fails") == "hello from the real node\n"
    assert succeeded["status"]["phase"] == "Succeeded"
    assert succeeded["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_job_pods_on_the_real_node_are_not_played_by_kwok(
    real_node_cluster: LocalControlPlane, real_node_namespace: str
) -> None:
    """kwok would complete a Running Job pod with exit code 0; here the container's own code counts."""
    template = pod_manifest(real_node_cluster, "unused", "sleep 1; exit 3")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "worker"},
        "spec": {"backoffLimit": 0, "template": {"spec": template["spec"]}},
    }
    real_node_cluster.request("POST", f"/apis/batch/v1/namespaces/{real_node_namespace}/jobs", job)

    def job_pod() -> dict[str, Any] | None:
        pods = real_node_cluster.request(
            "GET",
            f"/api/v1/namespaces/{real_node_namespace}/pods",
            query={"labelSelector": "job-name=worker"},
        )["items"]
        done = [p for p in pods if p.get("status", {}).get("phase") in {"Succeeded", "Failed"}]
        return done[0] if done else None

    finished = wait_for(job_pod, timeout=90, interval=0.3, what="the Job's pod to finish")
    assert finished["spec"]["nodeName"] == NODE_NAME
    assert finished["status"]["phase"] == "Failed"
    assert finished["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_exec_and_service_account_token(
    real_node_cluster: LocalControlPlane, real_node_namespace: str
) -> None:
    ns = real_node_namespace
    manifest = pod_manifest(
        real_node_cluster,
        "sleeper",
        "echo started; exec sleep 600",
        securityContext={"runAsUser": 1000, "runAsNonRoot": True, "readOnlyRootFilesystem": True},
    )
    create_pod(real_node_cluster, ns, manifest)
    wait_phase(real_node_cluster, ns, "sleeper", {"Running"})

    assert exec_in(real_node_cluster, ns, "sleeper", "id", "-u").strip() == "1000"
    token = exec_in(real_node_cluster, ns, "sleeper", "cat", f"{TOKEN_DIR}/token")
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["kubernetes.io"]["pod"]["name"] == "sleeper"
    assert "BEGIN CERTIFICATE" in exec_in(real_node_cluster, ns, "sleeper", "cat", f"{TOKEN_DIR}/ca.crt")
    assert exec_in(real_node_cluster, ns, "sleeper", "cat", f"{TOKEN_DIR}/namespace") == ns
    assert wait_for(lambda: logs(real_node_cluster, ns, "sleeper"), what="log") == "started\n"


def test_pods_reach_the_host_and_nothing_else(
    real_node_cluster: LocalControlPlane, real_node_namespace: str, host_s3_server: S3Server
) -> None:
    s3 = host_s3_server.client()
    s3.create_bucket(Bucket="from-pods")
    s3.put_object(Bucket="from-pods", Key="greeting.txt", Body=b"hello from S3")
    signer = boto3.client(  # rclone accepts presigned URLs signed with SigV4 only
        "s3",
        endpoint_url=host_s3_server.endpoint_url,
        aws_access_key_id=host_s3_server.access_key_id,
        aws_secret_access_key=host_s3_server.secret_access_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )
    url = signer.generate_presigned_url("get_object", Params={"Bucket": "from-pods", "Key": "greeting.txt"})
    script = (
        f"wget -q -O- '{url}'; echo; "
        # Only the pod subnet's own route: no default route, so no way off the bridge.
        "cat /proc/net/route; "
        "if nc -z -w 2 192.0.2.1 80 2>/dev/null; then echo ESCAPED; fi"
    )
    done = run_to_end(real_node_cluster, real_node_namespace, "client", script)

    output = logs(real_node_cluster, real_node_namespace, "client")
    assert done["status"]["phase"] == "Succeeded", output
    assert output.startswith("hello from S3\n"), output
    assert "ESCAPED" not in output
    routes = [line.split() for line in output.splitlines() if line.startswith("eth0")]
    assert [r[1] for r in routes] == ["00004D0A"], output  # 10.77.0.0, little-endian hex; no 00000000
