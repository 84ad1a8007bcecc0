"""Object names, labels, annotations and the built-in kinds' fields are refused as kube-apiserver
refuses them, with its 422 messages. Each test names the rule it copies (Kubernetes 1.31, the oldest
version the chart supports, where a later version relaxed it)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kmock import KubernetesError
from kubernetes.client import ApiClient, ApiException
from kubernetes.client import CoreV1Api as Core

from tests.kube.conftest import deployment
from tests.kube.emulator import KubeEmulator

Obj = dict[str, Any]
SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
             "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
             "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")  # fmt: skip
DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
           "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
           "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")  # fmt: skip
LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
         "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
         "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")  # fmt: skip
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
               "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
               "'my_value',  or '12345', regex used for validation is "
               "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")  # fmt: skip
ENV = ("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
       "'.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
       "regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")  # fmt: skip


def refusal(kube: KubeEmulator, obj: Obj) -> str:
    with pytest.raises(KubernetesError) as refused:
        kube.create(obj)
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    return refused.value.message or ""


def configmap(name: str, **meta: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", **meta}}  # fmt: skip


def service(name: str, *ports: Obj, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": list(ports) or [{"port": 80}], **spec}}  # fmt: skip


def test_names_are_dns_subdomains(kube: KubeEmulator, api: ApiClient) -> None:
    """pkg/api/validation/generic.go NameIsDNSSubdomain -> util/validation IsDNS1123Subdomain."""
    assert refusal(kube, configmap("Settings")) == (
        f'ConfigMap "Settings" is invalid: metadata.name: Invalid value: "Settings": {SUBDOMAIN}'
    )
    long = "a" * 254
    assert refusal(kube, configmap(long)) == (
        f'ConfigMap "{long}" is invalid: metadata.name: Invalid value: "{long}": must be no more than '
        "253 characters")  # fmt: skip
    kube.create(configmap("a" * 253))
    kube.create(configmap("web.v1-2"))
    with pytest.raises(ApiException) as over_http:  # the Status a client gets, with its causes
        Core(api).create_namespaced_config_map("default", configmap("x_y"))
    body = json.loads(over_http.value.body)
    assert (body["code"], body["reason"], body["details"]) == (422, "Invalid", {
        "name": "x_y", "kind": "ConfigMap", "causes": [{"reason": "FieldValueInvalid",
        "message": f'Invalid value: "x_y": {SUBDOMAIN}', "field": "metadata.name"}]})  # fmt: skip
    assert refusal(kube, configmap("")) == (
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required'
    )


def test_service_names_are_dns1035_labels(kube: KubeEmulator) -> None:
    """pkg/apis/core/validation ValidateServiceName = NameIsDNS1035Label (RelaxedServiceNameValidation
    allows DNS-1123 labels only from 1.36): no dots, at most 63 characters, a letter first."""
    assert refusal(kube, service("my.model-active")) == (
        f'Service "my.model-active" is invalid: metadata.name: Invalid value: "my.model-active": {DNS1035}'
    )
    name = "m" * 56 + "-preview"  # what a 56-character ModelDeployment's preview Service would be
    assert refusal(kube, service(name)) == (
        f'Service "{name}" is invalid: metadata.name: Invalid value: "{name}": must be no more than 63 '
        "characters")  # fmt: skip
    assert 'metadata.name: Invalid value: "1model"' in refusal(kube, service("1model"))
    kube.create(service("m" * 55 + "-preview"))


def test_namespace_names_are_dns_labels(kube: KubeEmulator) -> None:
    """pkg/api/validation ValidateNamespaceName = NameIsDNSLabel -> IsDNS1123Label."""
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team.a"}}
    assert refusal(kube, ns) == (
        'Namespace "team.a" is invalid: metadata.name: Invalid value: "team.a": must not contain dots'
    )
    ns["metadata"]["name"] = "Team"
    assert (
        refusal(kube, ns)
        == f'Namespace "Team" is invalid: metadata.name: Invalid value: "Team": {LABEL}'
    )


def test_generate_name(kube: KubeEmulator) -> None:
    """storage/names SimpleNameGenerator (the base cut to 58 characters, 5 random ones appended) and
    ValidateObjectMetaAccessor's generateName check (a trailing '-' allowed)."""
    made = kube.create(configmap("", generateName="x" * 70 + "-"))
    assert re.fullmatch("x{58}[a-z0-9]{5}", made["metadata"]["name"])
    message = refusal(kube, configmap("", generateName="Web-"))
    match = re.match(r'ConfigMap "(Web-[a-z0-9]{5})" is invalid', message)
    assert match is not None
    assert message == (
        f'ConfigMap "{match[1]}" is invalid: [metadata.generateName: Invalid value: "Web-": '
        f'{SUBDOMAIN}, metadata.name: Invalid value: "{match[1]}": {SUBDOMAIN}]'
    )


def test_labels_and_annotations(kube: KubeEmulator) -> None:
    """meta/v1/validation ValidateLabels (content.IsLabelKey, IsLabelValue: at most 63 bytes) and
    pkg/api/validation ValidateAnnotations (TotalAnnotationSizeLimitB = 256 KiB for keys and values)."""
    value = "v" * 64
    assert refusal(kube, configmap("c", labels={"turnout.dev/version": value})) == (
        f'ConfigMap "c" is invalid: metadata.labels: Invalid value: "{value}": must be no more than 63 bytes'
    )
    assert refusal(kube, configmap("c", labels={"app": "a b"})) == (
        f'ConfigMap "c" is invalid: metadata.labels: Invalid value: "a b": {LABEL_VALUE}'
    )
    assert refusal(kube, configmap("c", labels={"Turnout.dev/x": "1"})) == (
        'ConfigMap "c" is invalid: metadata.labels: Invalid value: "Turnout.dev/x": prefix part '
        f"{SUBDOMAIN}")  # fmt: skip
    big = {"a": "x" * (256 * 1024)}  # 1 + 262144 bytes
    assert refusal(kube, configmap("c", annotations=big)) == (
        'ConfigMap "c" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes'
    )
    kube.create(configmap("c", labels={"turnout.dev/version": "v" * 63, "empty": ""},
                          annotations={"a": "x" * (256 * 1024 - 1)}))  # fmt: skip


def test_deployment_template_labels_containers_env_and_ports(kube: KubeEmulator) -> None:
    """apps/validation ValidateDeploymentSpec and ValidatePodTemplateSpecForReplicaSet; core/validation
    validateContainerCommon (DNS-1123 label names), validateContainerPorts (IsValidPortName), ValidateEnv
    (IsEnvVarName, before RelaxedEnvironmentVariableValidation of 1.32), ValidateVolumeMounts."""
    dep = deployment("web")
    dep["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    assert refusal(kube, dep) == (
        'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: '
        '{"app":"other"}: `selector` does not match template `labels`')  # fmt: skip
    long = "w" * 64
    dep = deployment("web")
    dep["spec"]["selector"]["matchLabels"]["app"] = long
    dep["spec"]["template"]["metadata"]["labels"]["app"] = long
    assert refusal(kube, dep) == (
        f'Deployment.apps "web" is invalid: [spec.selector.matchLabels: Invalid value: "{long}": must '
        f'be no more than 63 bytes, spec.template.metadata.labels: Invalid value: "{long}": must be no '
        "more than 63 bytes]")  # fmt: skip
    bad = deployment("web", env=[{"name": "1TOKEN", "value": "x"}],
                     ports=[{"name": "http_port", "containerPort": 8080}],
                     volumeMounts=[{"name": "auth", "mountPath": "/etc/auth"}])  # fmt: skip
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = "Main"
    assert refusal(kube, bad) == (
        'Deployment.apps "web" is invalid: [spec.template.spec.containers[0].name: Invalid value: '
        f'"Main": {LABEL}, spec.template.spec.containers[0].ports[0].name: Invalid value: "http_port": '
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), "
        f'spec.template.spec.containers[0].env[0].name: Invalid value: "1TOKEN": {ENV}, '
        'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "auth"]')  # fmt: skip
    good = deployment("web", env=[{"name": "TURNOUT_AUTH_TOKEN_FILE", "value": "/etc/auth/tokens"}],
                      ports=[{"name": "http", "containerPort": 8080}],
                      volumeMounts=[{"name": "auth", "mountPath": "/etc/auth"}])  # fmt: skip
    good["spec"]["template"]["spec"]["volumes"] = [{"name": "auth", "secret": {"secretName": "t"}}]
    container = kube.create(good)["spec"]["template"]["spec"]["containers"][0]
    assert (container["terminationMessagePath"], container["terminationMessagePolicy"]) == (
        "/dev/termination-log",
        "File",
    )  # defaulted, as the API server does


def test_service_ports_and_selector(kube: KubeEmulator) -> None:
    """core/validation validateServicePort: names are DNS-1123 labels, required when there are several
    ports; a string targetPort is a port name (IsValidPortName); the selector's labels are validated."""
    assert refusal(kube, service("web", {"port": 80}, {"port": 81})) == (
        'Service "web" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]'
    )
    assert refusal(kube, service("web", {"name": "HTTP", "port": 80, "targetPort": "8080"})) == (
        f'Service "web" is invalid: [spec.ports[0].name: Invalid value: "HTTP": {LABEL}, '
        'spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)]'
    )
    kube.create(service("web", {"name": "http", "port": 80, "targetPort": "http"},
                        {"name": "metrics", "port": 9090, "targetPort": 9090}))  # fmt: skip


def test_core_v1_events_skip_the_name_rules(kube: KubeEmulator) -> None:
    """core/validation/events.go ValidateEventCreate: through the v1 API only legacyValidateEvent
    runs ("no further validation for backwards compatibility"): any name, but the namespaces of an
    event without eventTime must agree."""
    event = {"apiVersion": "v1", "kind": "Event", "reason": "Seen",
             "metadata": {"generateName": "Web.", "namespace": "default"},
             "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"}}  # fmt: skip
    assert re.fullmatch(r"Web\.[a-z0-9]{5}", kube.create(event)["metadata"]["name"])
    event["metadata"] = {"name": "Web.1", "namespace": "default"}
    event["involvedObject"]["namespace"] = "team"
    assert refusal(kube, event) == (
        'Event "Web.1" is invalid: involvedObject.namespace: Invalid value: "team": does not match '
        "event.namespace")  # fmt: skip
