"""Validation of the built-in kinds an operator writes, as kube-apiserver does it.

Copied from `pkg/apis/core/validation/validation.go` (`ValidatePodSpec`'s containers, ports, env,
volumes and volume mounts; `ValidateService`'s ports, selector and node ports),
`pkg/apis/networking/validation/validation.go` (`ValidateIngressSpec`'s rules, paths, backends and
TLS) and
`pkg/apis/apps/validation/validation.go` (`ValidateDeploymentSpec`,
`ValidatePodTemplateSpecForReplicaSet`), kept to the fields an operator sets: names of containers,
ports, volumes and env vars, the selector and the template labels it must match, required fields.
`names.py` holds the string rules and the object metadata checks; nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from tests.kube.fielderrors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    join,
    not_found,
    not_supported,
    required,
)
from tests.kube.names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_label_key,
    is_valid_port_name,
    is_valid_port_num,
    regex_error,
    validate_annotations,
    validate_labels,
)

Obj = dict[str, Any]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"


def name_check(group: str, plural: str) -> Callable[[str], list[str]]:
    """The rule for `metadata.name` of a kind: `ValidateNamespaceName` (DNS-1123 label),
    `ValidateServiceName` (DNS-1035 label before 1.36), every other kind here a DNS-1123 subdomain."""
    if (group, plural) == ("", "namespaces"):
        return is_dns1123_label
    if (group, plural) == ("", "services"):
        return is_dns1035_label
    return is_dns1123_subdomain


def _dns_label(value: str, path: str) -> list[FieldError]:
    return [invalid(path, value, m) for m in is_dns1123_label(value)]


def _matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """metav1.LabelSelectorAsSelector(...).Matches(labels)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):  # fmt: skip
            return False
    return True


def _validate_selector(selector: Mapping[str, Any], path: str) -> list[FieldError]:
    """meta/v1/validation ValidateLabelSelector."""
    errs = validate_labels(selector.get("matchLabels") or {}, join(path, "matchLabels"))
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        at, op = join(path, "matchExpressions", i), expr.get("operator")
        if op in ("In", "NotIn") and not expr.get("values"):
            errs.append(
                required(join(at, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
            )
        elif op in ("Exists", "DoesNotExist") and expr.get("values"):
            errs.append(forbidden(join(at, "values"),
                                  "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))  # fmt: skip
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.append(invalid(join(at, "operator"), op, "not a valid selector operator"))
        errs += [
            invalid(join(at, "key"), expr.get("key"), m) for m in is_label_key(str(expr.get("key")))
        ]
    return errs


def _validate_ports(ports: list[Obj], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, port in enumerate(ports):
        name = port.get("name") or ""
        if name:
            problems = is_valid_port_name(name)
            errs += [invalid(join(path, i, "name"), name, m) for m in problems]
            if not problems and name in seen:
                errs.append(duplicate(join(path, i, "name"), name))
            seen.add(name)
        if not port.get("containerPort"):
            errs.append(required(join(path, i, "containerPort")))
        else:
            errs += [invalid(join(path, i, "containerPort"), port["containerPort"], m)
                     for m in is_valid_port_num(port["containerPort"])]  # fmt: skip
    return errs


def _validate_container(container: Obj, volumes: set[str], path: str) -> list[FieldError]:
    name = container.get("name") or ""
    errs = _dns_label(name, join(path, "name")) if name else [required(join(path, "name"))]
    if not container.get("image"):
        errs.append(required(join(path, "image")))
    errs += _validate_ports(container.get("ports") or [], join(path, "ports"))
    for i, env in enumerate(container.get("env") or []):
        at = join(path, "env", i, "name")
        env_name = env.get("name") or ""
        errs += (
            [invalid(at, env_name, m) for m in is_env_var_name(env_name)]
            if env_name
            else [required(at)]
        )
    mount_paths: set[str] = set()
    for i, mount in enumerate(container.get("volumeMounts") or []):
        at = join(path, "volumeMounts", i)
        if not mount.get("name"):
            errs.append(required(join(at, "name")))
        if mount.get("name") not in volumes:
            errs.append(not_found(join(at, "name"), mount.get("name", "")))
        if not mount.get("mountPath"):
            errs.append(required(join(at, "mountPath")))
        elif mount["mountPath"] in mount_paths:
            errs.append(invalid(join(at, "mountPath"), mount["mountPath"], "must be unique"))
        mount_paths.add(mount.get("mountPath", ""))
    return errs


def validate_pod_spec(spec: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    volumes: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        at, name = join(path, "volumes", i), volume.get("name") or ""
        problems = _dns_label(name, join(at, "name")) if name else [required(join(at, "name"))]
        if name in volumes:
            problems.append(duplicate(join(at, "name"), name))
        for source, key in (("secret", "secretName"), ("configMap", "name")):
            if source in volume and not (volume[source] or {}).get(key):
                problems.append(required(join(at, source, key)))
        errs += problems
        if not problems:
            volumes.add(name)
    containers = spec.get("containers") or []
    if not containers:
        errs.append(required(join(path, "containers")))
    seen: set[str] = set()
    for i, container in enumerate(containers):
        errs += _validate_container(container, volumes, join(path, "containers", i))
        if container.get("name") in seen:
            errs.append(duplicate(join(path, "containers", i, "name"), container.get("name")))
        seen.add(container.get("name", ""))
    return errs


def validate_deployment(obj: Obj, old: Obj | None = None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    if int(spec.get("replicas", 0)) < 0:
        errs.append(
            invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0")
        )
    selector = spec.get("selector")
    if selector is None:
        errs.append(required("spec.selector"))
        selector = {}
    else:
        errs += _validate_selector(selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errs.append(
                invalid("spec.selector", selector, "empty selector is invalid for deployment")
            )
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    # LabelSelectorAsSelector: no selector selects nothing, an empty one everything
    if spec.get("selector") is None or not _matches(selector, labels):
        errs.append(
            invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        )
    errs += validate_labels(labels, "spec.template.metadata.labels")
    errs += validate_annotations((template.get("metadata") or {}).get("annotations") or {},
                                 "spec.template.metadata.annotations")  # fmt: skip
    pod = template.get("spec") or {}
    errs += validate_pod_spec(pod, "spec.template.spec")
    if pod.get("restartPolicy", "Always") != "Always":
        errs.append(
            not_supported("spec.template.spec.restartPolicy", pod["restartPolicy"], ["Always"])
        )
    old_selector = ((old or {}).get("spec") or {}).get("selector")
    if old is not None and spec.get("selector") != old_selector:  # ValidateDeploymentUpdate
        errs.append(invalid("spec.selector", spec.get("selector"), "field is immutable"))
    return errs


def validate_service(obj: Obj, old: Obj | None = None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    if spec.get("type", "ClusterIP") not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", spec["type"], SERVICE_TYPES))
    ports = spec.get("ports") or []
    if (
        not ports
        and spec.get("type", "ClusterIP") != "ExternalName"
        and spec.get("clusterIP") != "None"
    ):
        errs.append(required("spec.ports"))
    seen: set[str] = set()
    for i, port in enumerate(ports):
        at, name = join("spec.ports", i), port.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(required(join(at, "name")))
        elif name:
            errs += _dns_label(name, join(at, "name"))
            if name in seen:
                errs.append(duplicate(join(at, "name"), name))
            seen.add(name)
        errs += [
            invalid(join(at, "port"), port.get("port"), m)
            for m in is_valid_port_num(port.get("port"))
        ]
        if port.get("protocol", "TCP") not in PROTOCOLS:
            errs.append(not_supported(join(at, "protocol"), port["protocol"], PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, str):  # an IntOrString given as a string is a port *name*
            errs += [invalid(join(at, "targetPort"), target, m) for m in is_valid_port_name(target)]
        elif target is not None:
            errs += [invalid(join(at, "targetPort"), target, m) for m in is_valid_port_num(target)]
    errs += validate_labels(spec.get("selector") or {}, "spec.selector")
    if spec.get("type", "ClusterIP") == "ClusterIP":
        errs += [forbidden(join("spec.ports", i, "nodePort"),
                           "may not be used when `type` is 'ClusterIP'")
                 for i, port in enumerate(ports) if port.get("nodePort")]  # fmt: skip
    return errs


PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]


def validate_ingress(obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """networking/validation ValidateIngressSpec, kept to what an operator writes: a rule or a
    default backend, hosts (a DNS-1123 subdomain, or one under `*.`), paths and their types,
    service backends (a DNS-1035 name and a port number or name) and TLS Secret names."""
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    errs: list[FieldError] = []
    if not rules and not spec.get("defaultBackend"):
        errs.append(invalid("spec.rules", rules, "either `defaultBackend` or `rules` must be "
                            "specified"))  # fmt: skip
    for i, rule in enumerate(rules):
        at, host = join("spec.rules", i), rule.get("host")
        if host:
            bare = host[2:] if host.startswith("*.") else host
            errs += [invalid(join(at, "host"), host, m) for m in is_dns1123_subdomain(bare)]
        for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
            where, kind = join(at, "http", "paths", j), path.get("pathType")
            if kind not in PATH_TYPES:
                errs.append(not_supported(join(where, "pathType"), kind, PATH_TYPES))
            elif not str(path.get("path", "")).startswith("/"):
                errs.append(invalid(join(where, "path"), path.get("path"),
                                    "must be an absolute path"))  # fmt: skip
            service = (path.get("backend") or {}).get("service") or {}
            errs += [invalid(join(where, "backend", "service", "name"), service.get("name"), m)
                     for m in is_dns1035_label(service.get("name") or "")]  # fmt: skip
            number = (service.get("port") or {}).get("number")
            if number is not None:
                errs += [invalid(join(where, "backend", "service", "port", "number"), number, m)
                         for m in is_valid_port_num(number)]  # fmt: skip
    for i, tls in enumerate(spec.get("tls") or []):
        if tls.get("secretName"):
            errs += [invalid(join("spec.tls", i, "secretName"), tls["secretName"], m)
                     for m in is_dns1123_subdomain(tls["secretName"])]  # fmt: skip
    return errs


def validate_service_status(obj: Obj) -> list[FieldError]:
    """ValidateServiceStatusUpdate: load balancer ingress only for type LoadBalancer, and then
    IP addresses and DNS names."""
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not ingress:
        return []
    if (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return [forbidden("status.loadBalancer.ingress",
                          "may only be used when `spec.type` is 'LoadBalancer'")]  # fmt: skip
    errs: list[FieldError] = []
    for i, entry in enumerate(ingress):
        at = join("status.loadBalancer.ingress", i)
        if entry.get("ip"):
            try:
                ipaddress.ip_address(entry["ip"])
            except ValueError:
                errs.append(invalid(join(at, "ip"), entry["ip"],
                                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))  # fmt: skip
        if entry.get("hostname"):
            errs += [invalid(join(at, "hostname"), entry["hostname"], m)
                     for m in is_dns1123_subdomain(entry["hostname"])]  # fmt: skip
    return errs


def validate_pod(obj: Obj, old: Obj | None = None) -> list[FieldError]:
    return validate_pod_spec(obj.get("spec") or {}, "spec")


IMMUTABLE_SET = "field is immutable when `immutable` is set"


def is_config_map_key(key: str) -> list[str]:
    """validation.IsConfigMapKey: the keys of ConfigMap and Secret data."""
    errs = ["must be no more than 253 characters"] if len(key) > 253 else []
    if not re.fullmatch(CONFIG_KEY_FMT, key):
        errs.append(regex_error(CONFIG_KEY_MSG, CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if key in (".", ".."):
        errs.append(f"must not be '{key}'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _immutable_data(obj: Obj, old: Obj | None, fields: tuple[str, ...]) -> list[FieldError]:
    """An `immutable` ConfigMap or Secret keeps its data and stays immutable."""
    if old is None or not old.get("immutable"):
        return []
    errs = [] if obj.get("immutable") else [forbidden("immutable", IMMUTABLE_SET)]
    return errs + [forbidden(f, IMMUTABLE_SET) for f in fields if obj.get(f) != old.get(f)]


def validate_config_map(obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """ValidateConfigMap (and ValidateConfigMapUpdate's immutability), keys in sorted order
    (Go walks the map in a random one)."""
    errs = _immutable_data(obj, old, ("data", "binaryData"))
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    for key in sorted(data):
        errs += [invalid(f"data[{key}]", key, m) for m in is_config_map_key(key)]
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    for key in sorted(binary):
        errs += [invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key)]
    return errs


# Secret type -> the data keys it requires (each one a `Required value`).
SECRET_KEYS = {"kubernetes.io/tls": ("tls.crt", "tls.key"),
               "kubernetes.io/ssh-auth": ("ssh-privatekey",),
               "kubernetes.io/dockercfg": (".dockercfg",),
               "kubernetes.io/dockerconfigjson": (".dockerconfigjson",)}  # fmt: skip


def validate_secret(obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """ValidateSecret (and ValidateSecretUpdate: the type is immutable), for the types an
    operator writes; `stringData` is already folded into `data`."""
    errs: list[FieldError] = []
    kind = obj.get("type") or "Opaque"
    if old is not None and kind != (old.get("type") or "Opaque"):
        errs.append(invalid("type", kind, "field is immutable"))
    errs += _immutable_data(obj, old, ("data",))
    data = obj.get("data") or {}
    for key in sorted(data):
        errs += [invalid(f"data[{key}]", key, m) for m in is_config_map_key(key)]
    if kind == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        errs += [required("data[username]"), required("data[password]")]
    errs += [required(f"data[{key}]") for key in SECRET_KEYS.get(kind, ()) if key not in data]
    return errs


def validate_job(obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """A subset of ValidateJob: the template's pod spec and labels, restartPolicy OnFailure or
    Never, and (on an update) the selector unchanged."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    errs = validate_labels((template.get("metadata") or {}).get("labels") or {},
                           "spec.template.metadata.labels")  # fmt: skip
    pod = template.get("spec") or {}
    errs += validate_pod_spec(pod, "spec.template.spec")
    if pod.get("restartPolicy") not in ("OnFailure", "Never"):
        # a Required error, worded so by validateJobSpec whatever the value
        errs.append(required("spec.template.spec.restartPolicy",
                             'valid values: "OnFailure", "Never"'))  # fmt: skip
    old_selector = ((old or {}).get("spec") or {}).get("selector")
    if old is not None and spec.get("selector") != old_selector:
        errs.append(invalid("spec.selector", spec.get("selector"), "field is immutable"))
    return errs


STATUS_VALIDATORS: dict[tuple[str, str], Callable[[Obj], list[FieldError]]] = {
    ("", "services"): validate_service_status,
}
KIND_VALIDATORS: dict[tuple[str, str], Callable[[Obj, Obj | None], list[FieldError]]] = {
    ("", "configmaps"): validate_config_map,
    ("", "secrets"): validate_secret,
    ("apps", "deployments"): validate_deployment,
    ("batch", "jobs"): validate_job,
    ("", "services"): validate_service,
    ("", "pods"): validate_pod,
    ("networking.k8s.io", "ingresses"): validate_ingress,
}
