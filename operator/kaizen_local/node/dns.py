"""The real node's cluster DNS: pod hostnames under a headless Service, answered from the API server.

A multi-node run's Indexed Job names its rank-0 pod ``<job>-0.<service>`` (the pod's ``hostname``
under the headless Service's ``subdomain``), and the other ranks resolve that name. A real cluster's
CoreDNS answers it from EndpointSlices; here the local cluster runs this small server instead, on the
bridge's host address (the kubelet's ``clusterDNS``), answering A records for
``<hostname>.<subdomain>.<namespace>.svc.<domain>`` with the pod's IP, read from the API server at
each query. A Service's own name, ``<service>.<namespace>.svc.<domain>``, is answered with the
addresses of the Ready pods it selects, as for a headless Service: there is no kube-proxy, so a
cluster IP routes nowhere, and a pod reaches a Service whose ``port`` is its ``targetPort`` (the Helm
chart's operator Service) by its name. Any other name is NXDOMAIN: nothing is ever forwarded off this
machine.

    python -m kaizen_local.node.dns --address 10.77.0.1 --kubeconfig admin.kubeconfig
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from kaizen_local.node.kubelet import CLUSTER_DOMAIN

TTL = 5

PodLister = Callable[[str], list[dict[str, Any]]]
ServiceGetter = Callable[[str, str], dict[str, Any] | None]


def pod_address(pods: list[dict[str, Any]], hostname: str, subdomain: str) -> str | None:
    """The IP of the running pod with that hostname and subdomain (an Indexed Job's rank pod)."""
    for pod in pods:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        named = (spec.get("hostname"), spec.get("subdomain")) == (hostname, subdomain)
        if named and status.get("podIP") and status.get("phase") in ("Pending", "Running"):
            return str(status["podIP"])
    return None


def service_addresses(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[str]:
    """The IPs of the Ready pods a Service's selector picks, what its endpoints would be."""
    selector = (service.get("spec") or {}).get("selector") or {}
    addresses = []
    for pod in pods:
        labels, status = (pod.get("metadata") or {}).get("labels") or {}, pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if selector and selector.items() <= labels.items() and ready and status.get("podIP"):
            addresses.append(str(status["podIP"]))
    return sorted(addresses)


class PodResolver(BaseResolver):  # type: ignore[misc]
    """Answers ``<hostname>.<subdomain>.<namespace>.svc.<domain>`` from the pods ``list_pods`` gives,
    and ``<service>.<namespace>.svc.<domain>`` from ``get_service``'s Service and those pods."""

    def __init__(
        self, list_pods: PodLister, get_service: ServiceGetter, domain: str = CLUSTER_DOMAIN
    ) -> None:
        self.list_pods = list_pods
        self.get_service = get_service
        self.suffix = ("svc", *domain.split("."))

    def addresses(self, labels: tuple[str, ...]) -> list[str]:
        if len(labels) == 3 + len(self.suffix) and labels[3:] == self.suffix:
            hostname, subdomain, namespace = labels[:3]
            address = pod_address(self.list_pods(namespace), hostname, subdomain)
            return [address] if address else []
        if len(labels) == 2 + len(self.suffix) and labels[2:] == self.suffix:
            service, namespace = labels[:2]
            found = self.get_service(namespace, service)
            return service_addresses(found, self.list_pods(namespace)) if found else []
        return []

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        addresses = self.addresses(tuple(str(request.q.qname).rstrip(".").lower().split(".")))
        if not addresses:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype in (QTYPE.A, QTYPE.ANY):
            for address in addresses:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=TTL))
        return reply  # an AAAA query of a known name: no data, no error (pods have IPv4 only)


def api_resolver(kubeconfig: Path) -> PodResolver:
    """A resolver that reads pods and Services from the API server at each query."""
    from kaizen_local.cluster import Cluster

    cluster = Cluster(kubeconfig)

    def list_pods(namespace: str) -> list[dict[str, Any]]:
        answer = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods", missing_ok=True)
        return list((answer or {}).get("items") or [])

    def get_service(namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/api/v1/namespaces/{namespace}/services/{name}"
        return cluster.request("GET", path, missing_ok=True)  # type: ignore[no-any-return]

    return PodResolver(list_pods, get_service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", required=True, help="the address to answer on (the bridge's host)")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--kubeconfig", required=True, type=Path)
    args = parser.parse_args(argv)
    resolver = api_resolver(args.kubeconfig)
    logger = DNSLogger("request,reply,error")  # one line per query in the node's dns.log
    servers = [
        DNSServer(resolver, address=args.address, port=args.port, tcp=tcp, logger=logger)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    while all(server.isAlive() for server in servers):
        time.sleep(1)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
