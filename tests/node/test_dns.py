"""The real node's cluster DNS answers rank pods' names, and Services' names with their Ready pods, from
the pods and Services it is given, over real UDP on loopback, and nothing else: other names are
NXDOMAIN, never forwarded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from dnslib.server import DNSServer
from kaizen_local.node.dns import PodResolver
from kaizen_local.processes import free_port


def pod(hostname: str, subdomain: str, ip: str, phase: str = "Running") -> dict[str, Any]:
    return {"spec": {"hostname": hostname, "subdomain": subdomain}, "status": {"podIP": ip, "phase": phase}}


def selected(ip: str, app: str, ready: str = "True") -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": ready}]
    return {"metadata": {"labels": {"app": app, "x": "y"}}, "status": {"podIP": ip, "conditions": conditions}}


PODS = {
    "team-a": [
        pod("run-0", "run", "10.77.0.5"),
        pod("run-1", "run", "10.77.0.6"),
        pod("old-0", "old", "10.77.0.9", "Succeeded"),
    ],
    "ops": [
        selected("10.77.0.21", "operator"),
        selected("10.77.0.20", "operator"),
        selected("10.77.0.22", "operator", ready="False"),
        selected("10.77.0.23", "other"),
    ],
}
SERVICES: dict[tuple[str, str], dict[str, Any]] = {
    ("ops", "kz-operator"): {"spec": {"selector": {"app": "operator"}}},
    ("ops", "empty"): {"spec": {"selector": {"app": "nobody"}}},
    ("ops", "external"): {"spec": {"type": "ExternalName", "externalName": "example.org"}},
}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    def list_pods(namespace: str) -> list[dict[str, Any]]:
        return PODS.get(namespace, [])

    number = free_port()

    def get_service(namespace: str, name: str) -> dict[str, Any] | None:
        return SERVICES.get((namespace, name))

    server = DNSServer(PodResolver(list_pods, get_service), address="127.0.0.1", port=number)
    server.start_thread()
    yield number
    server.stop()


def ask(port: int, name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", port, timeout=5))


def test_a_rank_pod_resolves_to_its_ip(port: int) -> None:
    reply = ask(port, "run-0.run.team-a.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and [str(r.rdata) for r in reply.rr] == ["10.77.0.5"]
    assert [str(r.rdata) for r in ask(port, "RUN-1.run.team-a.svc.cluster.local.").rr] == ["10.77.0.6"]


def test_no_data_for_ipv6_of_a_known_name(port: int) -> None:
    reply = ask(port, "run-0.run.team-a.svc.cluster.local", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr


def test_a_service_resolves_to_its_ready_pods(port: int) -> None:
    """No kube-proxy routes a cluster IP here, so the name leads to the endpoints themselves."""
    reply = ask(port, "kz-operator.ops.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR
    assert [str(r.rdata) for r in reply.rr] == ["10.77.0.20", "10.77.0.21"]


@pytest.mark.parametrize(
    "name",
    [
        "empty.ops.svc.cluster.local",  # no pod selected
        "external.ops.svc.cluster.local",  # no selector: never forwarded
        "missing.ops.svc.cluster.local",
        "kz-operator.team-a.svc.cluster.local",
        "ops.svc.cluster.local",
        "old-0.old.team-a.svc.cluster.local",  # a finished pod keeps no name
        "run-2.run.team-a.svc.cluster.local",
        "run-0.run.team-b.svc.cluster.local",
        "run-0.run.team-a.svc.example.org",
        "huggingface.co",  # never forwarded off the machine
    ],
)
def test_other_names_do_not_exist(port: int, name: str) -> None:
    reply = ask(port, name)
    assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr
    assert QTYPE[reply.q.qtype] == "A"
