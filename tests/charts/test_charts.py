"""The chart, docker-compose.yml and dashboard pass tools/check_charts.py, and its checks do bite.

Offline and fast: the chart is rendered in-process by helm-python-sdk, no helm binary or cluster.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_checker() -> Any:
    spec = importlib.util.spec_from_file_location("check_charts", ROOT / "tools" / "check_charts.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cc = _load_checker()
SCENARIOS = cc.scenarios()


def by_name(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: cc.render(values) for name, values in SCENARIOS.items()}


# ------------------------------------------------------------------------------ everything passes


def test_ci_scenarios_exist() -> None:
    assert {"defaults", "minimal", "production", "keda"} <= SCENARIOS.keys()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_passes_every_check(name: str) -> None:
    docs, errors = cc.check_scenario(SCENARIOS[name])
    assert errors == []
    assert docs


def test_values_schema_docs_compose_dockerfile_and_dashboard_pass() -> None:
    assert cc.schema_closed_errors() == []
    assert cc.docs_errors() == []
    assert cc.compose_errors() == []
    assert cc.dockerfile_errors() == []
    assert cc.dashboard_errors() == []


def test_main_reports_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert cc.main([]) == 0
    assert "all checks passed" in capsys.readouterr().out


# ------------------------------------------------------------------------ what the scenarios render


def test_defaults_deploy_every_service_with_hpas_on_gateway_routers_senders(rendered: dict) -> None:
    docs = rendered["defaults"]
    deployments, hpas = by_name(docs, "Deployment"), by_name(docs, "HorizontalPodAutoscaler")
    assert len(deployments) == 11  # gateway, 2 routers, 6 senders, tracker, scheduler
    assert set(hpas) == {n for n in deployments if n.split("-")[1] in {"gateway", "router", "sender"}}
    assert deployments["herald-scheduler"]["spec"]["replicas"] == 1
    args = deployments["herald-sender-email-bulk"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["sender", "--channel", "email", "--lane", "bulk"]
    # Only the gateway (HPA minimum 2) runs more than one pod by default.
    assert set(by_name(docs, "PodDisruptionBudget")) == {"herald-gateway"}
    assert not by_name(docs, "ScaledObject") and not by_name(docs, "ServiceMonitor")
    job = by_name(docs, "Job")["herald-topics"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["topics", "create"]


def test_production_has_pdbs_servicemonitor_and_per_sender_overrides(rendered: dict) -> None:
    docs = rendered["production"]
    deployments = by_name(docs, "Deployment")
    assert set(by_name(docs, "PodDisruptionBudget")) == set(deployments)
    assert by_name(docs, "ServiceMonitor")
    assert by_name(docs, "HorizontalPodAutoscaler")["herald-sender-email-bulk"]["spec"]["minReplicas"] == 4
    push = deployments["herald-sender-push-transactional"]
    assert push["spec"]["replicas"] == 2
    assert "herald-sender-push-transactional" not in by_name(docs, "HorizontalPodAutoscaler")
    assert all(
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45 for d in deployments.values()
    )
    dashboard = by_name(docs, "ConfigMap")["herald-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["herald.json"].strip() == cc.DASHBOARD.read_text().strip()


def test_keda_scales_consumers_on_their_own_group_and_topic(rendered: dict) -> None:
    docs = rendered["keda"]
    scaled = by_name(docs, "ScaledObject")
    assert len(scaled) == 9  # 2 routers, 6 senders, tracker
    assert set(by_name(docs, "HorizontalPodAutoscaler")) == {"herald-gateway"}
    trigger = scaled["herald-sender-email-bulk"]["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "herald.sender.email.bulk"
    assert trigger["metadata"]["topic"] == "herald.deliveries.email.bulk"
    assert trigger["metadata"]["lagThreshold"] == "5000"
    assert scaled["herald-sender-email-bulk"]["spec"]["minReplicaCount"] == 0
    assert scaled["herald-tracker"]["spec"]["triggers"][0]["metadata"]["consumerGroup"] == "herald.tracker"
    assert scaled["herald-router-bulk"]["spec"]["triggers"][0]["metadata"]["topic"] == "herald.requests.bulk"
    assert all("replicas" not in by_name(docs, "Deployment")[name]["spec"] for name in scaled)


def test_credentials_reach_only_the_services_that_need_them(rendered: dict) -> None:
    deployments = by_name(rendered["production"], "Deployment")

    def secret_env(name: str) -> set[str]:
        env = deployments[name]["spec"]["template"]["spec"]["containers"][0].get("env", [])
        return {e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}

    assert secret_env("herald-gateway") == {"HERALD_ADMIN_TOKEN", "HERALD_REDIS_URL"}
    assert secret_env("herald-sender-email-bulk") == {
        "HERALD_SMTP_PASSWORD",
        "HERALD_SENDGRID_API_KEY",
        "HERALD_REDIS_URL",
    }
    assert secret_env("herald-sender-sms-bulk") == {"HERALD_TWILIO_AUTH_TOKEN", "HERALD_REDIS_URL"}
    assert secret_env("herald-router-bulk") == {"HERALD_REDIS_URL"}
    # Without secrets.existingSecret the gateway reads the Secret named after the release.
    gateway = by_name(rendered["defaults"], "Deployment")["herald-gateway"]
    (token,) = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "herald", "key": "admin-token"}


# -------------------------------------------------------------------------------- the checks bite


def test_grace_period_not_above_drain_timeout_fails_rendering() -> None:
    _, errors = cc.check_scenario({"drainTimeoutSeconds": 30, "terminationGracePeriodSeconds": 30})
    assert any("terminationGracePeriodSeconds (30) must be larger" in e for e in errors)


def test_unknown_value_key_is_rejected_by_the_schema() -> None:
    values = {"gateway": {"replica": 3}}
    assert any("'replica' was unexpected" in e for e in cc.schema_errors(values))
    _, errors = cc.check_scenario(values)
    assert any(e.startswith("render:") for e in errors)


def test_schema_check_catches_an_open_object() -> None:
    assert cc.schema_closed_errors({"type": "object", "properties": {}}) == [
        "schema #: object open to unknown keys (set additionalProperties)"
    ]


def test_unknown_sender_override_key_is_rejected() -> None:
    assert cc.schema_errors({"sender": {"overrides": {"fax-bulk": {"replicas": 2}}}})


def test_chart_made_secret_needs_an_admin_token_the_gateway_accepts() -> None:
    values = {"secrets": {"create": True, "data": {"adminToken": "too-short"}}}
    _, errors = cc.check_scenario(values)
    assert any("adminToken must be at least 16 characters" in e for e in errors)


def test_hpa_and_keda_on_the_same_service_fail_rendering() -> None:
    _, errors = cc.check_scenario({"tracker": {"autoscaling": {"enabled": True}, "keda": {"enabled": True}}})
    assert any("tracker: autoscaling.enabled and keda.enabled are both true" in e for e in errors)


def test_invariants_catch_replicas_under_an_hpa(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["defaults"])
    by_name(docs, "Deployment")["herald-router-bulk"]["spec"]["replicas"] = 3
    assert cc.invariant_errors(docs) == [
        "Deployment/herald-router-bulk: sets replicas although an autoscaler owns them"
    ]


def test_invariants_catch_a_pdb_over_a_single_pod(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["defaults"])
    by_name(docs, "HorizontalPodAutoscaler")["herald-gateway"]["spec"]["minReplicas"] = 1
    assert cc.invariant_errors(docs) == [
        "PodDisruptionBudget/herald-gateway: its Deployment may run a single pod"
    ]


def test_invariants_catch_short_grace_missing_probe_and_writable_root(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["defaults"])
    pod = by_name(docs, "Deployment")["herald-tracker"]["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 20
    del pod["containers"][0]["readinessProbe"]
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    errors = cc.invariant_errors(docs)
    assert len(errors) == 3
    assert any("readinessProbe must GET /readyz" in e for e in errors)
    assert any("readOnlyRootFilesystem must be true" in e for e in errors)
    assert any("terminationGracePeriodSeconds 20 must exceed the drain timeout 20" in e for e in errors)


def test_kubernetes_schema_validation_catches_a_misspelt_field(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["defaults"])
    container = by_name(docs, "Deployment")["herald-gateway"]["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container["livenessProbe"]
    errors = cc.manifest_errors(docs)
    assert errors and all("'livenesProbe' was unexpected" in e for e in errors)


def test_crd_structure_check_wants_string_trigger_metadata(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["keda"])
    by_name(docs, "ScaledObject")["herald-tracker"]["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 1000
    assert cc.manifest_errors(docs) == [
        "ScaledObject/herald-tracker: spec.triggers.0.metadata.lagThreshold: 1000 is not of type 'string'"
    ]


def test_compose_check_catches_missing_healthcheck_and_unknown_dependency() -> None:
    import yaml

    data = yaml.safe_load(cc.COMPOSE.read_text())
    del data["services"]["tracker"]["healthcheck"]
    data["services"]["scheduler"]["depends_on"] = {"zookeeper": {"condition": "service_healthy"}}
    data["services"]["sender-sms-bulk"]["image"] = "herald:other"
    del data["services"]["sender-push-bulk"]
    assert sorted(cc.compose_errors(data)) == [
        "compose scheduler: depends on unknown service zookeeper",
        "compose sender-sms-bulk: must use the one Herald image and build (herald:local)",
        "compose tracker: needs a healthcheck",
        "compose: no service runs `herald sender --channel push --lane bulk`",
    ]


def test_dockerfile_check_catches_root_and_build_tools() -> None:
    text = cc.ROOT.joinpath("Dockerfile").read_text().replace("USER 10001:10001", "USER root")
    text += "RUN apt-get install -y gcc\n"
    errors = cc.dockerfile_errors(text)
    assert errors == [
        "Dockerfile: the runtime stage must run as USER 10001",
        "Dockerfile: the runtime stage must not install build tools",
    ]


def test_dashboard_check_catches_an_unknown_metric() -> None:
    import json

    dash = json.loads(cc.DASHBOARD.read_text())
    dash["panels"][1]["targets"][0]["expr"] = "sum(rate(herald_notifications_accepted[5m]))"
    errors = cc.dashboard_errors(dash)
    assert any("unknown metric herald_notifications_accepted" in e for e in errors)
    assert "dashboard: no panel shows herald_notifications_accepted_total" in errors
