"""The chart's registry webhooks: the operator serves the endpoint from the two Secrets at the
paths its settings default to, a Service and an Ingress reach it, cert-manager can write its
certificate, and the bundled MLflow is set up to deliver to it (what docs/webhooks.md says an
in-cluster MLflow must set)."""

from __future__ import annotations

from typing import Any

from tests.chart.conftest import operator_container
from tests.manifests import CHART, NAMESPACE, Doc, Helm, one
from turnout_operator.settings import OperatorSettings

SCENARIO = "with-webhooks-values.yaml"


def env(container: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def mounts(container: Doc) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def volumes(deployment: Doc) -> dict[str, Doc]:
    return {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_the_operator_serves_the_endpoint_from_the_secrets_at_its_default_paths(
    helm: Helm,
) -> None:
    docs = helm.template(SCENARIO)
    container = operator_container(docs)
    assert {k: v for k, v in env(container).items() if "WEBHOOK" in k} == {
        "TURNOUT_OPERATOR_WEBHOOK_PORT": "8443",
        "TURNOUT_OPERATOR_WEBHOOK_MAX_AGE_SECONDS": "300",
    }
    assert {"name": "webhooks", "containerPort": 8443, "protocol": "TCP"} in container["ports"]
    defaults = OperatorSettings()
    tls, secret = mounts(container)["webhook-tls"], mounts(container)["webhook-secret"]
    assert (f"{tls}/tls.crt", f"{tls}/tls.key", f"{secret}/secret") == (
        defaults.webhook_cert_file, defaults.webhook_key_file, defaults.webhook_secret_file,
    )  # fmt: skip
    found = volumes(one(docs, "Deployment", "turnout-operator"))
    assert found["webhook-tls"]["secret"] == {
        "secretName": "turnout-webhooks-tls",
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
    }
    assert found["webhook-secret"]["secret"] == {
        "secretName": "turnout-webhook-hmac", "items": [{"key": "secret", "path": "secret"}],
    }  # fmt: skip


def test_a_service_an_ingress_and_a_certificate_reach_the_endpoint(helm: Helm) -> None:
    docs = helm.template(SCENARIO)
    service = one(docs, "Service", "turnout-webhooks")
    assert service["spec"]["ports"] == [
        {"name": "webhooks", "port": 443, "targetPort": "webhooks", "protocol": "TCP"}
    ]
    # the operator's pods, and of them the leader only (it labels its own pod)
    operator = one(docs, "Service", "turnout-operator")["spec"]["selector"]
    assert service["spec"]["selector"] == {**operator, "turnout.dev/leader": "true"}
    certificate = one(docs, "Certificate", "turnout-webhooks")
    assert certificate["spec"] == {
        "secretName": "turnout-webhooks-tls",
        "dnsNames": ["turnout-webhooks", f"turnout-webhooks.{NAMESPACE}.svc",
                     f"turnout-webhooks.{NAMESPACE}.svc.cluster.local",
                     "turnout-webhooks.example.com"],
        "issuerRef": {"kind": "ClusterIssuer", "name": "cluster-ca"},
    }  # fmt: skip
    ingress = one(docs, "Ingress", "turnout-webhooks")
    assert ingress["spec"]["rules"] == [{
        "host": "turnout-webhooks.example.com",
        "http": {"paths": [{"path": "/webhooks/mlflow", "pathType": "Exact", "backend": {
            "service": {"name": "turnout-webhooks", "port": {"name": "webhooks"}}}}]},
    }]  # fmt: skip


def test_the_bundled_mlflow_may_deliver_to_the_endpoint(helm: Helm) -> None:
    docs = helm.template(SCENARIO)
    deployment = one(docs, "Deployment", "turnout-mlflow")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {k: v for k, v in env(container).items() if "WEBHOOK" in k or k == "PYTHONPATH"} == {
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "PYTHONPATH": "/etc/turnout/mlflow-site",
        "TURNOUT_WEBHOOK_CA_FILE": "/etc/turnout/webhook-ca/ca.crt",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": {
            "secretKeyRef": {"name": "mlflow-webhook-key", "key": "fernet-key"}
        },
    }
    assert (mounts(container)["site"], mounts(container)["webhook-ca"]) == (
        "/etc/turnout/mlflow-site", "/etc/turnout/webhook-ca",
    )  # fmt: skip
    found = volumes(deployment)
    assert found["site"]["configMap"] == {"name": "turnout-mlflow-site"}
    assert found["webhook-ca"]["secret"] == {
        "secretName": "turnout-webhooks-tls", "optional": True,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }  # fmt: skip
    site = one(docs, "ConfigMap", "turnout-mlflow-site")["data"]["sitecustomize.py"]
    shipped = (CHART / "files" / "mlflow" / "sitecustomize.py.txt").read_text()
    assert site.strip() == shipped.strip()  # what tests/integration/test_webhooks.py runs


def test_without_webhooks_nothing_of_them_is_rendered(helm: Helm) -> None:
    docs = helm.template("with-mlflow-values.yaml")
    assert [d for d in docs if "webhook" in str(d).lower()] == []


def test_webhooks_need_the_hmac_secret(helm: Helm) -> None:
    message = helm.template_error("webhooks.enabled=true")
    assert "- at '/webhooks/secret/name': minLength: got 0, want 1" in message
