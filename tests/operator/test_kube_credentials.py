"""The client's credential refresh runs once per interval, not before every request, and still runs:
a token that is reloaded (a rotated service-account token, an expiring kubeconfig token) is used."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizen_operator.kube import load_api_client, throttle_refresh
from kubernetes import client
from kubernetes.client import configuration as client_configuration
from kubernetes.config import kube_config

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: secret-token}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_hook_runs_once_per_interval_and_its_token_is_used() -> None:
    cfg = client.Configuration()
    tokens = iter(["Bearer one", "Bearer two"])
    calls = []

    def hook(current: client.Configuration) -> None:
        """As the kubernetes loaders' hooks do: set the token, and install itself again."""
        calls.append(1)
        current.api_key["BearerToken"] = next(tokens)
        current.refresh_api_key_hook = hook  # type: ignore[assignment]

    cfg.refresh_api_key_hook = hook  # type: ignore[assignment]
    clock = Clock()
    throttle_refresh(cfg, every_s=5.0, clock=clock)
    for _ in range(10):
        assert cfg.get_api_key_with_prefix("BearerToken") == "Bearer one"
    assert len(calls) == 1, "not before every request"
    clock.now += 4.9
    assert cfg.get_api_key_with_prefix("BearerToken") == "Bearer one"
    clock.now += 0.1
    assert cfg.get_api_key_with_prefix("BearerToken") == "Bearer two", "due again: the new token is used"
    for _ in range(10):
        assert cfg.get_api_key_with_prefix("BearerToken") == "Bearer two"
    assert len(calls) == 2, "still throttled after the hook installed itself again"


def test_no_hook_stays_no_hook() -> None:
    cfg = client.Configuration()
    throttle_refresh(cfg)
    assert cfg.refresh_api_key_hook is None


def test_the_operator_client_does_not_reapply_its_config_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a kubeconfig, the loader's hook sets the host again, which scans the environment for
    proxies; a hundred requests' worth of credentials must do that at most once."""
    (tmp_path / "config").write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    api = load_api_client(2)
    scans: list[int] = []
    real = client_configuration.getproxies

    def counted() -> dict[str, str]:
        scans.append(1)
        return real()

    monkeypatch.setattr(client_configuration, "getproxies", counted)
    for _ in range(100):
        headers: dict[str, str] = {}
        api.update_params_for_auth(headers, [], ["BearerToken"], "/api", "GET", None)
        assert headers["authorization"] == "Bearer secret-token"
    assert len(scans) <= 1, f"the config was applied again {len(scans)} times"
