"""Everything a ModelDeployment becomes is checked with the API server's rules before any write.

The rules themselves are checked against the tables of k8s.io/apimachinery's own tests
(pkg/util/validation/validation_test.go: TestIsDNS1123Subdomain, TestIsDNS1035Label,
TestIsQualifiedName, TestIsValidLabelValue, TestIsEnvVarName); `problems()` and `check()` over the
classes of input that used to reach the API server and loop: long and dotted names, label keys,
annotations near 256 KiB, reserved environment variables, unparseable tracking URIs, durations
whose dates overflow, and any JSON at all as a spec.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_operator.domain import kube_rules as K
from turnout_operator.domain.manifests import Defaults, build_deployment, build_service
from turnout_operator.domain.observed import ColorState, Observed
from turnout_operator.domain.planner import plan
from turnout_operator.domain.spec import MAX_DELAY_SECONDS, ModelDeploymentSpec
from turnout_operator.domain.status import HistoryEntry, ModelDeploymentStatus, Rollout
from turnout_operator.domain.validation import (
    MAX_NAME_LENGTH,
    check,
    name_problems,
    object_errors,
    problems,
)

DEFAULTS = Defaults(image="turnout-serve:1", tracking_uri="http://mlflow:5000")
MINIMAL = {"model": {"name": "m", "version": "1"}}

# --- the rules, against apimachinery's own tables -------------------------------------------------

SUBDOMAIN_GOOD = ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a.a", "ab.a", "abc.a", "a1.a", "a-1.a", "a--1--2--b.a", "a.1", "ab.1", "abc.1", "a1.1", "a-1.1", "a--1--2--b.1", "0.a", "01.a", "012.a", "1a.a", "1-a.a", "1--a--b--2", "0.1", "01.1", "012.1", "1a.1", "1-a.1", "1--a--b--2.1", "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55", "a" * 253]  # fmt: skip
SUBDOMAIN_BAD = ["", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a", "a b", "1 ", " 1", "1 2", "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.A", "1A.1", "0.A", "01.A", "012.A", "1A.a", "1a.A", "A.B.C.D.E", "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee", "a@b", "a,b", "a_b", "a;b", "a:b", "a%b", "a?b", "a$b", "a" * 254]  # fmt: skip
DNS1035_GOOD = ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "a" * 63]
DNS1035_BAD = ["0", "01", "012", "1a", "1-a", "1--a--b--2", "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a", "a b", "1 ", " 1", "1 2", "a" * 64]  # fmt: skip
QUALIFIED_GOOD = ["simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple", "now-with-dashes/now-with-dashes", "now.with.dots/now-with-dashes", "now-with.dashes-and.dots/now-with-dashes", "1-num.2-num/3-num", "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123", "example.com/Uppercase_Is_OK_123", "requests.storage-foo", "a" * 63, "a" * 253 + "/" + "b" * 63]  # fmt: skip
QUALIFIED_BAD = ["nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash", "Example.com/abc", "example_com/abc", "example.com/", "/simple", "a" * 64, "a" * 254 + "/abc"]  # fmt: skip
LABEL_VALUE_GOOD = ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, ""]  # fmt: skip
LABEL_VALUE_BAD = ["nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad", "-starts-with-dash", "ends-with-dash-", ".starts.with.dot", "ends.with.dot.", "a" * 64]  # fmt: skip
ENV_GOOD = ["A", "ABC", "AbC_123", "_123", "A.B", "A-B", ".", "..", "-", "A.B.C", "a-b", "a-", "-a", "_a"]  # fmt: skip
ENV_BAD = ["1", "123", "1A", "a b", "a!b", "a=b", "", "+a"]


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (K.dns1123_subdomain, SUBDOMAIN_GOOD, SUBDOMAIN_BAD),
        (K.dns1035_label, DNS1035_GOOD, DNS1035_BAD),
        (K.qualified_name, QUALIFIED_GOOD, QUALIFIED_BAD),
        (K.label_value, LABEL_VALUE_GOOD, LABEL_VALUE_BAD),
        (K.env_var_name, ENV_GOOD, ENV_BAD),
    ],
)
def test_the_rules_agree_with_apimachinerys_tables(
    rule: Any, good: list[str], bad: list[str]
) -> None:
    assert [v for v in good if rule(v)] == []
    assert [v for v in bad if not rule(v)] == []


def test_annotation_keys_are_qualified_names_once_lower_cased_and_bytes_are_counted() -> None:
    assert K.annotation_errors({"Example.com/Key": "v"}) == []
    assert K.label_errors({"Example.com/Key": "v"}) != []
    limit = K.TOTAL_ANNOTATION_SIZE_LIMIT
    assert K.annotation_errors({"k": "v" * (limit - 1)}) == []
    assert K.annotation_errors({"k": "ā" * (limit // 2)}) == [
        f"Too long: must have at most {limit} bytes, got {1 + limit}"
    ]


# --- the ModelDeployment's name ---------------------------------------------------------------------


def spec_of(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({**MINIMAL, **fields})


def built(name: str, spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    deployments = [
        build_deployment(name, "ns", color, "7", "models:/m/7", 2, spec, DEFAULTS)
        for color in ("blue", "green")
    ]
    services = [build_service(name, "ns", role, "blue") for role in ("active", "preview")]
    return [*deployments, *services]


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-z]([-a-z0-9.]{0,70}[a-z0-9])?", fullmatch=True))
def test_a_name_is_accepted_exactly_when_every_object_built_from_it_is_valid(name: str) -> None:
    spec = spec_of()
    objects_valid = all(not list(object_errors(obj)) for obj in built(name, spec))
    found = problems(name, "ns", spec, DEFAULTS)
    assert (found == []) == objects_valid
    assert (found == []) == (len(name) <= MAX_NAME_LENGTH and "." not in name)
    assert all(p.field == "metadata.name" for p in found)


def test_names_too_long_or_dotted_say_why() -> None:
    assert [str(p) for p in name_problems("a" * 56)] == [
        "metadata.name: 56 characters: at most 55, as the preview Service '<name>-preview' "
        "must be a DNS-1035 label of at most 63 characters"
    ]
    [dotted] = name_problems("fraud.v2")
    assert dotted.field == "metadata.name"
    assert dotted.message.startswith("'fraud.v2' cannot name a Service: a DNS-1035 label")


# --- pod labels, nodeSelector, annotations, env ---------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text("abAB09-_./", min_size=0, max_size=80))
def test_label_keys_the_api_server_refuses_are_found_before_any_write(key: str) -> None:
    for field, spec_field in (("podLabels", "spec.template.podLabels"),
                              ("nodeSelector", "spec.template.nodeSelector")):  # fmt: skip
        spec = spec_of(template={field: {key: "v"}})
        objects_valid = all(not list(object_errors(obj)) for obj in built("m", spec))
        found = problems("m", "ns", spec, DEFAULTS)
        assert (found == []) == objects_valid == (K.qualified_name(key) == [])
        assert all(p.field == spec_field for p in found)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2 * K.TOTAL_ANNOTATION_SIZE_LIMIT), st.sampled_from(["a", "ā"]))
def test_annotations_over_256_kib_with_the_operators_own_are_refused_first(
    size: int, char: str
) -> None:
    """Sizes all around the limit; the typed spec has no bound of its own, so this is the check
    that stands between them and the API server (an older CRD without the CEL rule)."""
    spec = spec_of(template={"podAnnotations": {"team/notes": char * size}})
    objects_valid = all(not list(object_errors(obj)) for obj in built("m", spec))
    found = problems("m", "ns", spec, DEFAULTS)
    assert (found == []) == objects_valid
    if found:
        [problem] = {p.field for p in found}
        assert problem == "spec.template.podAnnotations"
        assert "Too long: must have at most 262144 bytes" in str(found[0])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["TURNOUT_", "MLFLOW_TRACKING_URI", "TURNOUT_MODEL_URI"]),
       st.text("ABZ_", max_size=10))  # fmt: skip
def test_the_operators_variables_cannot_be_overridden(reserved: str, suffix: str) -> None:
    name = reserved + (suffix if reserved == "TURNOUT_" else "")
    checked = check("m", "ns", {**MINIMAL, "template": {"env": [{"name": name, "value": "x"}]}},
                    DEFAULTS)  # fmt: skip
    [problem] = checked.problems
    assert problem.field == "spec.template.env.0.name"
    assert "set by the operator" in problem.message


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://[::1", "'http://[::1' is not a URL: Invalid IPv6 URL"),
        ("http://mlflow:99999", "'http://mlflow:99999' is not a URL: Port out of range 0-65535"),
        ("http://:5000", "'http://:5000' names no host"),
    ],
)
def test_tracking_uris_the_registry_client_cannot_parse_are_invalid(uri: str, message: str) -> None:
    checked = check("m", "ns", {**MINIMAL, "registry": {"trackingUri": uri}}, DEFAULTS)
    assert [(p.field, p.message) for p in checked.problems] == [
        ("spec.registry.trackingUri", f"Value error, {message}")
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30).map(lambda rest: "http://" + rest))
def test_any_accepted_tracking_uri_can_be_asked(uri: str) -> None:
    from urllib.parse import urlsplit

    if not check("m", "ns", {**MINIMAL, "registry": {"trackingUri": uri}}, DEFAULTS).problems:
        parts = urlsplit(uri)
        assert parts.hostname and (parts.port is None or 0 <= parts.port <= 65535)


# --- durations ------------------------------------------------------------------------------------

DELAYS = ["autoPromotionSeconds", "scaleDownDelaySeconds", "abortScaleDownDelaySeconds",
          "progressDeadlineSeconds"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DELAYS), st.integers(MAX_DELAY_SECONDS + 1, 10**18))
def test_durations_past_the_cap_are_invalid_and_name_the_field(field: str, seconds: int) -> None:
    checked = check("m", "ns", {**MINIMAL, "strategy": {"blueGreen": {field: seconds}}}, DEFAULTS)
    assert [p.field for p in checked.problems] == [f"spec.strategy.blueGreen.{field}"]
    assert (
        checked.problems[0].message == f"Input should be less than or equal to {MAX_DELAY_SECONDS}"
    )


NOW = datetime(9999, 1, 1, tzinfo=UTC)  # the last year a datetime holds: the worst case


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries({f: st.integers(0, MAX_DELAY_SECONDS) for f in DELAYS[:3]}))
def test_any_valid_delay_can_be_planned_with(delays: dict[str, int]) -> None:
    """Promotion (scale-down scheduled), abort: every time the planner computes stays a date."""
    spec = ModelDeploymentSpec.model_validate(
        {**MINIMAL, "model": {"name": "m", "version": "2"}, "replicas": 1,
         "strategy": {"blueGreen": {**delays, "smokeTest": False}}}
    )  # fmt: skip
    ready = "9998-12-01T00:00:00Z"
    status = ModelDeploymentStatus(
        desired_version="2", active_version="1", active_color="blue",
        history=[HistoryEntry(version="1", color="blue", promoted_at=ready, outcome="Promoted")],
        rollout=Rollout(version="2", color="green", model_uri="models:/m/2", started_at=ready,
                        ready_at=ready),
    )  # fmt: skip
    colors = {"blue": ColorState("1", 1, True, 1), "green": ColorState("2", 1, True, 1)}
    observed = Observed(status=status, colors=colors, active_selector="blue")  # type: ignore[arg-type]
    for wanted in ({}, {"turnout.dev/abort": "now"}, {"turnout.dev/promote": "now"}):
        plan(spec, Observed(**{**observed.__dict__, "annotations": wanted}), NOW)


# --- any JSON at all --------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "model",
                    "name",
                    "version",
                    "strategy",
                    "blueGreen",
                    "registry",
                    "template",
                    "env",
                    "replicas",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_checking_any_spec_never_raises_and_explains_every_refusal(raw: Any) -> None:
    checked = check("m", "ns", raw if isinstance(raw, dict) else {"model": raw}, DEFAULTS)
    assert isinstance(checked.spec, ModelDeploymentSpec)
    assert all(p.field.startswith(("spec", "metadata.name")) for p in checked.problems)
    if checked.problems:
        assert checked.why and len(checked.why) <= 1000
