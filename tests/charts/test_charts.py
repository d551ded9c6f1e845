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


def container_env(docs: list[dict], deployment: str) -> dict[str, dict]:
    """The container's own env (secrets and per-workload settings) plus the ConfigMap it reads, by name."""
    container = by_name(docs, "Deployment")[deployment]["spec"]["template"]["spec"]["containers"][0]
    configmaps = by_name(docs, "ConfigMap")
    env: dict[str, dict] = {}
    for source in container.get("envFrom", []):
        data = configmaps[source["configMapRef"]["name"]]["data"]
        env.update({k: {"name": k, "value": v} for k, v in data.items()})
    env.update({e["name"]: e for e in container.get("env", [])})
    return env


def env_values(docs: list[dict], deployment: str) -> dict[str, str]:
    return {k: e["value"] for k, e in container_env(docs, deployment).items() if "value" in e}


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


@pytest.mark.slow  # renders every scenario again; `make charts` runs the same in CI
def test_main_reports_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert cc.main([]) == 0
    assert "all checks passed" in capsys.readouterr().out


# ------------------------------------------------------------------------ what the scenarios render


def test_defaults_deploy_every_service_with_hpas_on_gateway_routers_senders(rendered: dict) -> None:
    docs = rendered["defaults"]
    deployments, hpas = by_name(docs, "Deployment"), by_name(docs, "HorizontalPodAutoscaler")
    assert len(deployments) == 13  # gateway, 2 routers, 6 senders, tracker, scheduler, webhooks, campaigns
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

    assert secret_env("herald-gateway") == {
        "HERALD_ADMIN_TOKEN",
        "HERALD_TWILIO_AUTH_TOKEN",
        "HERALD_REDIS_URL",
    }
    assert secret_env("herald-sender-email-bulk") == {
        "HERALD_SMTP_PASSWORD",
        "HERALD_SENDGRID_API_KEY",
        "HERALD_REDIS_URL",
    }
    assert secret_env("herald-sender-sms-bulk") == {"HERALD_TWILIO_AUTH_TOKEN", "HERALD_REDIS_URL"}
    assert secret_env("herald-router-bulk") == {"HERALD_REDIS_URL"}
    assert secret_env("herald-sender-push-bulk") == {"HERALD_REDIS_URL"}
    # Without secrets.existingSecret the gateway reads the Secret named after the release.
    gateway = container_env(rendered["defaults"], "herald-gateway")
    assert gateway["HERALD_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "herald",
        "key": "admin-token",
    }


def test_receipt_settings_reach_the_gateway_and_sms_senders_but_not_push(rendered: dict) -> None:
    docs = rendered["production"]
    gateway = container_env(docs, "herald-gateway")
    # The gateway verifies Twilio status callbacks with the auth token (optional: Twilio may be unused).
    assert gateway["HERALD_TWILIO_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "herald-credentials",
        "key": "twilio-auth-token",
        "optional": True,
    }
    assert gateway["HERALD_PUBLIC_BASE_URL"]["value"] == "https://herald.cinema.example.com"
    assert gateway["HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY"]["value"].startswith("MFkw")
    assert gateway["HERALD_SENDGRID_WEBHOOK_MAX_AGE_S"]["value"] == "300"
    assert gateway["HERALD_RECEIPT_DEDUPE_TTL_S"]["value"] == "604800"
    # sms senders build the Twilio status callback URL from the public base URL.
    sms = env_values(docs, "herald-sender-sms-transactional")
    assert sms["HERALD_PUBLIC_BASE_URL"] == "https://herald.cinema.example.com"
    assert sms["HERALD_TWILIO_FROM"] == "+14155550100"
    # Least privilege: the push sender gets neither, not even through the shared ConfigMap.
    for lane in ("transactional", "bulk"):
        push = container_env(docs, f"herald-sender-push-{lane}")
        assert "HERALD_TWILIO_AUTH_TOKEN" not in push
        assert "HERALD_PUBLIC_BASE_URL" not in push
        assert not {k for k in push if "SENDGRID" in k or "RECEIPT" in k}
    for name in ("herald-router-bulk", "herald-tracker", "herald-scheduler"):
        assert "HERALD_TWILIO_AUTH_TOKEN" not in container_env(docs, name)
    # Routers build marketing email's List-Unsubscribe links from the public base URL; the tracker and
    # the scheduler need neither.
    assert (
        env_values(docs, "herald-router-bulk")["HERALD_PUBLIC_BASE_URL"]
        == "https://herald.cinema.example.com"
    )
    for name in ("herald-tracker", "herald-scheduler"):
        assert "HERALD_PUBLIC_BASE_URL" not in container_env(docs, name)


def test_email_senders_fail_over_under_their_providers_shared_rate_limits(rendered: dict) -> None:
    docs = rendered["production"]
    for lane in ("transactional", "bulk"):
        email = env_values(docs, f"herald-sender-email-{lane}")
        assert email["HERALD_EMAIL_PROVIDERS"] == "sendgrid,smtp"
        assert {k: email[k] for k in email if "RATE" in k or "BURST" in k} == {
            "HERALD_SENDGRID_RATE_PER_S": "100",
            "HERALD_SENDGRID_BURST": "200",
            "HERALD_SMTP_RATE_PER_S": "50",
            "HERALD_SMTP_BURST": "100",
            "HERALD_RATE_LIMIT_BULK_RESERVE": "0.25",
        }
        assert email["HERALD_SENDGRID_BATCH_LINGER_MS"] == "25"
    # One provider account, one limit: other channels do not get the email providers' limits.
    sms, push = env_values(docs, "herald-sender-sms-bulk"), env_values(docs, "herald-sender-push-bulk")
    assert sms["HERALD_TWILIO_RATE_PER_S"] == "30" and push["HERALD_FCM_RATE_PER_S"] == "500"
    assert not {k for k in {*sms, *push} if k.startswith(("HERALD_SMTP_", "HERALD_SENDGRID_"))}
    assert "HERALD_SMTP_RATE_PER_S" not in env_values(docs, "herald-gateway")


def test_per_lane_overrides_reach_retries_and_queued_reports(rendered: dict) -> None:
    docs = rendered["production"]
    bulk, transactional = (
        env_values(docs, f"herald-sender-email-{lane}") for lane in ("bulk", "transactional")
    )
    assert (bulk["HERALD_RETRY_MAX_ATTEMPTS"], bulk["HERALD_RETRY_MAX_DELAY_S"]) == ("8", "120")
    assert (transactional["HERALD_RETRY_MAX_ATTEMPTS"], transactional["HERALD_RETRY_MAX_DELAY_S"]) == (
        "6",
        "30",
    )
    assert bulk["HERALD_BREAKER_FAILURE_THRESHOLD"] == "10"
    assert env_values(docs, "herald-router-bulk")["HERALD_ROUTER_REPORT_QUEUED"] == "true"
    assert "HERALD_ROUTER_REPORT_QUEUED" not in env_values(docs, "herald-router-transactional")
    scheduler = env_values(docs, "herald-scheduler")
    assert (scheduler["HERALD_SCHEDULER_LEASE_S"], scheduler["HERALD_SCHEDULER_BATCH"]) == ("60", "1000")
    # where webhooks may point: the gateway (checks on save) and the webhooks service, nobody else
    for name in ("herald-gateway", "herald-webhooks"):
        assert env_values(docs, name)["HERALD_WEBHOOK_ALLOW_HOSTS"] == "hooks.internal.example"
    assert "HERALD_WEBHOOK_ALLOW_HOSTS" not in env_values(docs, "herald-tracker")
    assert env_values(docs, "herald-webhooks")["HERALD_WEBHOOK_RETRY_FOR_S"] == "86400"


def test_report_queued_can_be_forced_off_for_every_lane() -> None:
    docs = cc.render({"router": {"reportQueued": False}})
    for lane in ("transactional", "bulk"):
        assert env_values(docs, f"herald-router-{lane}")["HERALD_ROUTER_REPORT_QUEUED"] == "false"


def test_a_sendgrid_key_the_gateway_cannot_load_fails_the_check() -> None:
    _, errors = cc.check_scenario({"receipts": {"sendgridWebhookPublicKey": "not-a-key"}})
    assert errors == [
        "Deployment/herald-gateway/gateway: GatewaySettings rejects the rendered environment: invalid "
        "settings: HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY: Value error, not a base64 DER or PEM public key"
    ]


def test_defaults_keep_the_service_defaults(rendered: dict) -> None:
    docs = rendered["defaults"]
    assert env_values(docs, "herald-sender-email-bulk")["HERALD_EMAIL_PROVIDERS"] == "smtp"
    assert env_values(docs, "herald-sender-sms-bulk")["HERALD_SMS_PROVIDERS"] == "twilio"
    assert env_values(docs, "herald-sender-push-bulk")["HERALD_PUSH_PROVIDERS"] == "fcm"
    # Optional settings left empty are not set at all, so the service's own default applies.
    for name in by_name(docs, "Deployment"):
        env = env_values(docs, name)
        assert (
            not {"HERALD_PUBLIC_BASE_URL", "HERALD_TWILIO_FROM", "HERALD_ROUTER_REPORT_QUEUED"} & env.keys()
        )


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


@pytest.mark.parametrize(
    "values",
    [
        {"providers": {"emailProviders": ["twilio"]}},  # an SMS provider cannot send email
        {"providers": {"emailProviders": []}},
        {"providers": {"smtp": {"ratePerSecond": -1}}},
        {"providers": {"rateLimitBulkReserve": 1}},
        {"receipts": {"publicBaseUrl": "herald.example.com"}},  # no scheme: Twilio signatures would not match
        {"router": {"overrides": {"bulk": {"retry": {"maxAttempts": 3}}}}},  # retries are a sender setting
    ],
)
def test_schema_rejects_bad_provider_and_receipt_values(values: dict) -> None:
    assert cc.schema_errors(values)


def test_settings_wiring_catches_scope_leaks_and_values_the_service_rejects(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["production"])
    push = by_name(docs, "Deployment")["herald-sender-push-bulk"]["spec"]["template"]["spec"]["containers"][0]
    push["env"].append({"name": "HERALD_TWILIO_FROM", "value": "+447700900123"})
    scheduler = by_name(docs, "Deployment")["herald-scheduler"]["spec"]["template"]["spec"]["containers"][0]
    scheduler["env"].append({"name": "HERALD_SENDGRID_API_KEY", "value": "SG.x"})
    for item in scheduler["env"]:
        if item["name"] == "HERALD_SCHEDULER_BATCH":
            item["value"] = "0"
    by_name(docs, "ConfigMap")["herald"]["data"]["HERALD_TWILIO_AUTH_TOKEN"] = "leaked"
    assert cc.invariant_errors(docs) == [
        "ConfigMap: HERALD_TWILIO_AUTH_TOKEN reaches every workload; "
        "it belongs only to ['gateway', 'sender-sms']",
        "Deployment/herald-sender-push-bulk/sender-push-bulk: gets HERALD_TWILIO_FROM, which only "
        "['sender-sms'] may get",
        "Deployment/herald-scheduler/scheduler: sets HERALD_SENDGRID_API_KEY, which scheduler does not read",
        "Deployment/herald-scheduler/scheduler: gets HERALD_SENDGRID_API_KEY, "
        "which only ['sender-email'] may get",
        "Deployment/herald-scheduler/scheduler: SchedulerSettings rejects the rendered environment: invalid "
        "settings: HERALD_SCHEDULER_BATCH: Input should be greater than or equal to 1",
    ]


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
    data["services"]["sender-push-transactional"]["environment"] = {
        **data["services"]["gateway"]["environment"],
        "HERALD_SMTP_HOST": "mailpit",
    }
    assert sorted(cc.compose_errors(data)) == [
        "compose scheduler: depends on unknown service zookeeper",
        "compose sender-push-transactional: gets HERALD_ADMIN_TOKEN, which only ['gateway'] may get",
        "compose sender-push-transactional: gets HERALD_HTTP_HOST, which only ['gateway'] may get",
        "compose sender-push-transactional: gets HERALD_HTTP_PORT, which only ['gateway'] may get",
        "compose sender-push-transactional: gets HERALD_SMTP_HOST, which only ['sender-email'] may get",
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


def test_scopes_and_service_commands_are_derived_from_the_code() -> None:
    """No hand-kept table: a provider's settings reach only its channel's senders, every service's own
    settings only that service, and compose must run each CLI service for every channel and lane."""
    from herald_common.channels import CHANNEL_NAMES
    from herald_common.settings import LANES, ConsumerSettings
    from herald_gateway.settings import GatewaySettings

    assert cc.SCOPED_ENV["HERALD_FCM_BASE_URL"] == {"sender-push"}
    assert cc.SCOPED_ENV["HERALD_EMAIL_FROM"] == {"sender-email"}
    assert cc.SCOPED_ENV["HERALD_RETRY_MAX_ATTEMPTS"] == {f"sender-{ch}" for ch in CHANNEL_NAMES}
    assert cc.SCOPED_ENV["HERALD_TWILIO_AUTH_TOKEN"] == {"gateway", "sender-sms"}
    unscoped = {f"HERALD_{f.upper()}" for f in GatewaySettings.model_fields} - set(cc.SCOPED_ENV)
    assert unscoped <= {f"HERALD_{f.upper()}" for f in ConsumerSettings.model_fields}
    commands = cc.herald_commands()
    for ch in CHANNEL_NAMES:
        for lane in LANES:
            assert ("sender", "--channel", ch, "--lane", lane) in commands
    assert ("gateway",) in commands and ("topics", "create") in commands


def test_dashboard_must_show_every_declared_metric() -> None:
    import json

    dash = json.loads(cc.DASHBOARD.read_text())
    dash["panels"] = [p for p in dash["panels"] if "herald_receipts_total" not in json.dumps(p)]
    assert "dashboard: no panel shows herald_receipts_total" in cc.dashboard_errors(dash)


def test_kafka_sasl_and_tls_reach_every_kafka_client(rendered: dict) -> None:
    docs = rendered["secure"]
    configmap = by_name(docs, "ConfigMap")["herald"]["data"]
    assert configmap["HERALD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert configmap["HERALD_KAFKA_SSL_CERTFILE"] == "/etc/herald/kafka/tls.crt"
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]
    assert len(pods) == len(by_name(docs, "Deployment")) + 1  # every workload and the topics Job
    for pod in pods:
        container = pod["containers"][0]
        secret_env = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
        }
        assert secret_env["HERALD_KAFKA_SASL_PASSWORD"] == "herald-kafka-sasl"
        assert {"name": "kafka-tls", "mountPath": "/etc/herald/kafka", "readOnly": True} in container[
            "volumeMounts"
        ]
        assert {"name": "kafka-tls", "secret": {"secretName": "herald-kafka-tls"}} in pod["volumes"]
    [policy] = [d for d in docs if d["kind"] == "NetworkPolicy"]
    api, metrics = policy["spec"]["ingress"]
    assert api["ports"] == [{"port": 8080, "protocol": "TCP"}] and len(api["from"]) == 1
    assert metrics["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "herald"


def test_sasl_without_its_secret_fails_rendering() -> None:
    _, errors = cc.check_scenario({"kafka": {"securityProtocol": "SASL_SSL"}})
    assert any("kafka.sasl.existingSecret" in e for e in errors)
