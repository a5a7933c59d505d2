"""Command lines of the local control plane's processes: pure functions of paths and ports.

``controlplane`` owns the processes (ports, spawning, readiness); this module says how each is
configured and why, so a flag can be read and changed without the process plumbing around it.
"""

from __future__ import annotations

from pathlib import Path

# kube-controller-manager controllers: what Jobs, CronJobs, Deployments, garbage collection and namespace
# cleanup need. serviceaccount-controller creates each namespace's "default" ServiceAccount, so the
# ServiceAccount admission plugin can stay on as in production (a pod naming a missing ServiceAccount is
# rejected). The serviceaccount-token controller is not needed: pods get bound tokens from the
# TokenRequest API, which the apiserver serves itself (the real node's kubelet asks it for them).
KCM_CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "serviceaccount-controller",
    "deployment-controller",
    "replicaset-controller",
    # The kube-root-ca.crt ConfigMap in each namespace: a kubelet mounts it into every pod's
    # service-account token volume.
    "root-ca-certificate-publisher-controller",
    # Fills the built-in admin, edit and view ClusterRoles from the roles labelled to aggregate into
    # them (the chart's user roles among them).
    "clusterrole-aggregation-controller",
)


def etcd(data_dir: Path, client_url: str, peer_url: str) -> list[str]:
    return [
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}",
        "--unsafe-no-fsync",  # test data: durability is worthless, fsync latency is not
        "--log-level=warn",
    ]


def apiserver(
    etcd_url: str, pki: Path, port: int, sa_key: Path, tokens: Path, address: str = "127.0.0.1"
) -> list[str]:
    """``address``: where it listens, 127.0.0.1, or with the real node the pod bridge's host address
    (pods reach nothing else on the host; host processes reach it as well as loopback). Its
    self-signed serving certificate names the advertise and bind addresses, so in-pod clients verify it
    at that address."""
    return [
        f"--etcd-servers={etcd_url}",
        f"--cert-dir={pki}",  # the apiserver writes a self-signed serving cert here
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={port}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={sa_key}",
        f"--service-account-signing-key-file={sa_key}",
        f"--token-auth-file={tokens}",
        "--authorization-mode=Node,RBAC",  # Node: what a kubelet may read (its pods' secrets...)
        "--allow-privileged=true",
        # No Endpoints for Service "kubernetes": without kube-proxy its cluster IP routes nowhere anyway;
        # a pod that talks to the API server (the chart's operator) is given the address (apiServer.host).
        "--endpoint-reconciler-type=none",
        # TaintNodesByCondition would taint every new node not-ready:NoSchedule, and without the
        # node-lifecycle controller nothing removes the taint.
        "--disable-admission-plugins=TaintNodesByCondition",
        # A namespace's annotations can then send all its pods to the real node (node.realnode).
        # OwnerReferencesPermissionEnforcement, as on OpenShift: an ownerReference that blocks the owner's
        # deletion needs `update` on the owner's finalizers (the chart's RBAC test relies on it).
        "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction,OwnerReferencesPermissionEnforcement",
        "--enable-priority-and-fairness=false",  # saves startup work; nothing here competes for the API
    ]


def _component(kubeconfig: Path, port: int, cert_dir: Path) -> list[str]:
    """What kube-controller-manager and kube-scheduler share."""
    return [
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez",  # probe without credentials
        "--kube-api-qps=200",  # client-side throttling would only slow the tests down
        "--kube-api-burst=400",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
    ]


def controller_manager(kubeconfig: Path, port: int, pki: Path) -> list[str]:
    return [
        *_component(kubeconfig, port, pki / "kcm"),
        f"--controllers={','.join(KCM_CONTROLLERS)}",
        f"--root-ca-file={pki / 'apiserver.crt'}",
    ]


def scheduler(kubeconfig: Path, port: int, pki: Path) -> list[str]:
    return _component(kubeconfig, port, pki / "scheduler")


def kwok(kubeconfig: Path, stages: list[Path]) -> list[str]:
    """kwok manages only the fake nodes (annotated ``kwok.x-k8s.io/node=fake``), never the real one."""
    return [
        f"--kubeconfig={kubeconfig}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--cidr=10.244.0.0/16",
        "--node-ip=10.0.0.2",
        *(f"--config={stage}" for stage in stages),
    ]
