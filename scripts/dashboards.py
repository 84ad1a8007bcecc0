"""turnout's Grafana dashboards, as code: builds them and writes charts/turnout/dashboards/*.json.

Why code: two dashboards share one panel vocabulary (units, legends, the datasource variable, the
layout), and Grafana JSON written by hand drifts (duplicate ids, overlapping panels, a variable
renamed in one place). The JSON files are what the Helm chart ships and what Grafana imports; this
script is their only author. `--check` exits 1 when the files on disk differ from what it builds
(the test suite runs it), so edit this file and run it, never the JSON.

Every query goes through the `${datasource}` variable (a Prometheus data source picked in the
dashboard) and filters on the dashboard's variables; the test suite evaluates each one against a
real Prometheus scraping a real turnout-serve and operator, so a query here must return series.
Serving series are selected without a job name (a PodMonitor or any scrape config may name it);
operator series with `job="turnout-operator"`.

    .venv/bin/python scripts/dashboards.py [--check] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "charts" / "turnout" / "dashboards"
SCHEMA_VERSION = 39  # Grafana 11.0; later versions migrate it on load
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
OPERATOR = 'job="turnout-operator"'
PREDICTIONS = 'endpoint=~"invocations|v2_infer"'  # not /feedback
TRAINING_MAE, TRAINING_ACCURACY = 'metric="mae"', 'metric="accuracy"'  # what the run logged
# Thresholds drawn on panels are the alert thresholds of charts/turnout/rules/turnout.rules.yaml.
ERROR_RATIO_ALERT, P99_ALERT_SECONDS, QUALITY_MIN_LABELS = 0.05, 0.5, 200
ALPHA = 0.05  # turnout-serve's drift test level, split over the tests (Bonferroni)


# --- the builder -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel. `instant`: one value per series (tables, bar gauges)."""

    expr: str
    legend: str = ""
    instant: bool = False

    def to_json(self, ref_id: str, table: bool) -> dict[str, Any]:
        return {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "format": "table" if table else "time_series",
            "instant": self.instant,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "refId": ref_id,
        }


@dataclass
class Panel:
    """A panel: `width` in grid columns (of 24); `defaults` and `custom` go in its field config."""

    title: str
    description: str
    targets: list[Target]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 8
    height: int = 8
    defaults: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    transformations: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        table = self.kind == "table"
        custom = {**CUSTOM_DEFAULTS.get(self.kind, {}), **self.custom}
        defaults: dict[str, Any] = {"unit": self.unit, **self.defaults}
        if custom:
            defaults["custom"] = custom
        panel = {
            "datasource": DATASOURCE,
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "id": panel_id,
            "options": {**OPTION_DEFAULTS.get(self.kind, {}), **self.options},
            "targets": [
                target.to_json(chr(ord("A") + i), table) for i, target in enumerate(self.targets)
            ],
            "title": self.title,
            "type": self.kind,
        }
        if self.transformations:
            panel["transformations"] = self.transformations
        return panel


@dataclass
class Row:
    title: str
    panels: list[Panel]


CUSTOM_DEFAULTS: dict[str, dict[str, Any]] = {
    "timeseries": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                   "spanNulls": False},
    "state-timeline": {"fillOpacity": 80, "lineWidth": 0},
}  # fmt: skip
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "timeseries": {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    "state-timeline": {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "mergeValues": True, "showValue": "auto", "rowHeight": 0.9,
    },
    "stat": {"colorMode": "background", "graphMode": "none", "justifyMode": "auto",
             "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
             "textMode": "value_and_name"},
    "bargauge": {"displayMode": "basic", "orientation": "horizontal", "showUnfilled": True,
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    "table": {"showHeader": True, "cellHeight": "sm"},
}  # fmt: skip


def layout(rows: list[Row]) -> list[dict[str, Any]]:
    """Row headers and their panels, left to right, wrapping at the grid's width; ids from 1."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in rows:
        header = {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}
        panels.append({"collapsed": False, "gridPos": header, "id": len(panels) + 1,
                       "panels": [], "title": row.title, "type": "row"})  # fmt: skip
        y += 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(panel.to_json(len(panels) + 1, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def datasource_variable() -> dict[str, Any]:
    return {"current": {}, "hide": 0, "includeAll": False, "label": "Data source",
            "multi": False, "name": "datasource", "options": [], "query": "prometheus",
            "refresh": 1, "regex": "", "type": "datasource"}  # fmt: skip


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-value variable from `label_values(...)`; "All" expands to every value (no
    `allValue`), so a regex matcher on it still needs the label to be there."""
    return {"current": {}, "datasource": DATASOURCE, "definition": query, "hide": 0,
            "includeAll": True, "label": label, "multi": True, "name": name, "options": [],
            "query": query, "refresh": 2, "regex": "", "sort": 1, "type": "query"}  # fmt: skip


def annotation(
    name: str, expr: str, color: str, title: str, text: str, tags: str = "outcome"
) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "enable": True, "expr": expr, "iconColor": color,
            "name": name, "step": "1m", "tagKeys": tags, "textFormat": text,
            "titleFormat": title, "useValueForTime": False}  # fmt: skip


BUILTIN_ANNOTATION = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
    "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
    "type": "dashboard",
}  # fmt: skip


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[dict[str, Any]],
    rows: list[Row],
    annotations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "annotations": {"list": [BUILTIN_ANNOTATION, *(annotations or [])]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": layout(rows),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["turnout"],
        "templating": {"list": [datasource_variable(), *variables]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
    }


def steps(*pairs: tuple[str, float | None]) -> dict[str, Any]:
    """Absolute thresholds: (color, from value); the first one's value is None (base)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def dashed_red(regex: str) -> dict[str, Any]:
    """Draw the series whose display name matches `regex` as a dashed red line (bounds)."""
    return {"matcher": {"id": "byRegexp", "options": regex}, "properties": [
        {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
        {"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
        {"id": "custom.fillOpacity", "value": 0},
    ]}  # fmt: skip


def value_mappings(*values: tuple[int, str, str]) -> list[dict[str, Any]]:
    """Value mappings for state timelines and stats: (value, text, color)."""
    options = {str(v): {"color": c, "index": i, "text": t} for i, (v, t, c) in enumerate(values)}
    return [{"options": options, "type": "value"}]


# --- Model serving ---------------------------------------------------------------------------

COLOR_KEY = "namespace, model, version, color"
COLOR_LEGEND = "{{namespace}}/{{model}} v{{version}} {{color}}"
SERVING_FILTER = 'namespace=~"$namespace", model=~"$model", version=~"$version"'


def served(metric: str, *matchers: str) -> str:
    """A serving series filtered on the dashboard's namespace, model and version."""
    return f"{metric}{{{', '.join([SERVING_FILTER, *matchers])}}}"


def rate(metric: str, *matchers: str) -> str:
    return f"rate({served(metric, *matchers)}[$__rate_interval])"


def latency(quantile: float) -> Target:
    buckets = rate("turnout_inference_request_duration_seconds_bucket", PREDICTIONS)
    return Target(
        f"histogram_quantile({quantile}, sum by ({COLOR_KEY}, le) ({buckets}))",
        f"p{round(quantile * 100)} {COLOR_LEGEND}",
    )


def shadow_quantile(metric: str, quantile: float, by: str, legend: str) -> Target:
    buckets = rate(f"{metric}_bucket")
    return Target(
        f"histogram_quantile({quantile}, sum by ({COLOR_KEY}, {by}le) ({buckets}))",
        f"p{round(quantile * 100)} {legend}{COLOR_LEGEND}",
    )


def shadow_row() -> Row:
    """Shadow traffic (strategy.blueGreen.shadow): the active color's pods count what became of
    each live answer offered for mirroring; the preview's pods count what they compared and how
    their predictions differ. Series of both sides carry their own version and color."""
    by_result = f"sum by ({COLOR_KEY}, result)"
    active_side = 'result=~"mirrored|dropped_.+|failed"'
    preview_side = 'result=~"compared|error"'
    return Row("Shadow traffic", [
        Panel("Mirrored copies per second, by result",
              "The active color: live answers copied to the preview (mirrored), dropped because "
              "the bounded queue was full, over maxRequestsPerSecond, or queued when mirroring "
              "stopped, and copies the preview did not take (failed). Drops never delay a live "
              "answer: a queue that stays full means the preview is slow.",
              [Target(f"{by_result} ({rate('turnout_shadow_requests_total', active_side)})",
                      f"{{{{result}}}} {COLOR_LEGEND}")], unit="reqps",
              custom={"stacking": {"group": "A", "mode": "normal"}}),
        Panel("Compared copies per second",
              "The preview: mirrored copies it scored and compared with the active's answer, "
              "and those it could not (error), by its own answer's status or incomparable.",
              [Target(f"{by_result} ({rate('turnout_shadow_requests_total', preview_side)})",
                      f"{{{{result}}}} {COLOR_LEGEND}"),
               Target(f"sum by ({COLOR_KEY}, reason) ({rate('turnout_shadow_errors_total')})",
                      f"error {{{{reason}}}} {COLOR_LEGEND}")], unit="reqps"),
        Panel("Agreement with the active color",
              "Per preview pod: the share of its last compared rows on which it agrees with the "
              "active (same class, or within the regression tolerance); the pre-promotion "
              "analysis weighs it by the rows behind it (shadowAgreementMin). Empty until a "
              "copy is compared.",
              [Target(f"max by ({COLOR_KEY}, pod) ({served('turnout_shadow_agreement_ratio')})",
                      f"{{{{pod}}}} {COLOR_LEGEND}")],
              unit="percentunit", defaults={"min": 0, "max": 1}),
        Panel("Rows behind the agreement ratio",
              "Compared rows each preview pod's agreement ratio stands on (its window).",
              [Target(f"max by ({COLOR_KEY}, pod) ({served('turnout_shadow_window_rows')})",
                      f"{{{{pod}}}} {COLOR_LEGEND}")], defaults={"min": 0, "decimals": 0}),
        Panel("Prediction difference p50 / p99",
              "Per compared row, |preview - active| in the target's own units (for "
              "probabilities, the mean over the classes), from the histogram's buckets. Log "
              "scale.",
              [shadow_quantile("turnout_shadow_abs_diff", 0.5, "", ""),
               shadow_quantile("turnout_shadow_abs_diff", 0.99, "", "")],
              unit="none", custom={"scaleDistribution": {"log": 10, "type": "log"}}),
        Panel("Scoring time: preview vs active",
              "p50 and p99 of the time each compared copy took to score on the active (as it "
              "reported it) and on the preview, both recorded by the preview's pods: a preview "
              "slower on the same requests shows here before any user sees it.",
              [shadow_quantile("turnout_shadow_latency_seconds", q, "side, ", "{{side}} ")
               for q in (0.5, 0.99)], unit="s"),
    ])  # fmt: skip


def serving_dashboard() -> dict[str, Any]:
    requests = rate("turnout_inference_requests_total", PREDICTIONS)
    errors = rate("turnout_inference_requests_total", PREDICTIONS, 'code=~"5.."')
    client_errors = rate("turnout_inference_requests_total", PREDICTIONS, 'code=~"4.."')
    tests = served("", '__name__=~"turnout_feature_drift_p_value|turnout_prediction_drift_p_value"')
    # One bound per pod (its number of tests), shown per color; `instance` is always there.
    bound = f"max by ({COLOR_KEY}) ({ALPHA} / count by ({COLOR_KEY}, instance) ({tests}))"
    log_scale = {"scaleDistribution": {"log": 10, "type": "log"}}
    psi_bands = {"thresholds": steps(("green", None), ("yellow", 0.1), ("red", 0.25))}
    traffic = Row("Traffic and latency", [
        Panel("Requests per second",
              "Prediction requests answered per second (/invocations and the V2 infer endpoint, "
              "any status), per model version and color: during a blue-green switch both colors "
              "show.",
              [Target(f"sum by ({COLOR_KEY}) ({requests})", COLOR_LEGEND)], unit="reqps"),
        Panel("Error ratio",
              "Share of prediction requests answered with a 5xx (the model raised, not ready, "
              f"timeout) and with a 4xx (bad payloads). The red line is the alert threshold "
              f"({ERROR_RATIO_ALERT:.0%} of 5xx for 5 minutes, TurnoutHighErrorRatio).",
              [Target(f"sum by ({COLOR_KEY}) ({errors}) / sum by ({COLOR_KEY}) ({requests})",
                      f"5xx {COLOR_LEGEND}"),
               Target(f"sum by ({COLOR_KEY}) ({client_errors}) / sum by ({COLOR_KEY}) "
                      f"({requests})", f"4xx {COLOR_LEGEND}")],
              unit="percentunit",
              defaults={"min": 0, "thresholds": steps(("transparent", None),
                                                      ("red", ERROR_RATIO_ALERT))},
              custom={"thresholdsStyle": {"mode": "line"}}),
        Panel("Latency p50 / p95 / p99",
              "Prediction latency quantiles from the request-duration histogram (received to "
              "response ready). The red line is the p99 alert threshold "
              f"({P99_ALERT_SECONDS * 1000:.0f} ms for 10 minutes, TurnoutHighLatencyP99).",
              [latency(0.5), latency(0.95), latency(0.99)], unit="s",
              defaults={"thresholds": steps(("transparent", None), ("red", P99_ALERT_SECONDS))},
              custom={"thresholdsStyle": {"mode": "line"}}),
        Panel("Rows predicted per second",
              "Rows (not requests) predicted per second: the load the model itself sees.",
              [Target(f"sum by ({COLOR_KEY}) ({rate('turnout_inference_rows_total')})",
                      COLOR_LEGEND)], custom={"axisLabel": "rows/s"}),
        Panel("Requests in flight",
              "Requests being processed now, summed over the pods of a color: a rising line "
              "with flat throughput means the pods are saturated.",
              [Target(f"sum by ({COLOR_KEY}) ({served('turnout_inference_in_flight')})",
                      COLOR_LEGEND)]),
        Panel("Ready pods",
              "Pods whose model is loaded and warmed up (turnout_model_ready).",
              [Target(f"sum by ({COLOR_KEY}) ({served('turnout_model_ready')})", COLOR_LEGEND)],
              defaults={"min": 0, "decimals": 0}),
    ])  # fmt: skip
    drift = Row("Data drift", [
        Panel("Feature drift p-values",
              "p-value of each feature's two-sample test, live window vs the training reference "
              "(KS for numbers, chi-squared for categories), lowest over the pods of a color. "
              "Drift is detected when any p-value of a pod falls below the dashed red line: "
              f"the Bonferroni bound {ALPHA} / number of tests (features + prediction). "
              "Log scale.",
              [Target(f"min by ({COLOR_KEY}, feature) "
                      f"({served('turnout_feature_drift_p_value')})",
                      f"{{{{feature}}}} {COLOR_LEGEND}"),
               Target(bound, f"Bonferroni bound {COLOR_LEGEND}")],
              width=12, unit="none", custom=log_scale,
              overrides=[dashed_red("^Bonferroni bound.*")]),
        Panel("Feature PSI",
              "Population stability index of each feature (effect size, highest over the pods "
              "of a color). Customary reading: under 0.1 stable, 0.1-0.25 moderate, over 0.25 "
              "major shift. PSI never drives the alert: on small windows it is high from noise "
              "alone (see docs/drift.md).",
              [Target(f"max by ({COLOR_KEY}, feature) ({served('turnout_feature_drift_psi')})",
                      f"{{{{feature}}}} {COLOR_LEGEND}")],
              width=12, unit="none", defaults=psi_bands,
              custom={"thresholdsStyle": {"mode": "line+area"}}),
        Panel("Prediction drift p-value",
              "p-value of the test on the model's predictions (only for models logged with "
              "predictions in their reference), with the Bonferroni bound.",
              [Target(f"min by ({COLOR_KEY}) ({served('turnout_prediction_drift_p_value')})",
                      COLOR_LEGEND),
               Target(bound, f"Bonferroni bound {COLOR_LEGEND}")],
              width=6, unit="none", custom=log_scale,
              overrides=[dashed_red("^Bonferroni bound.*")]),
        Panel("Prediction PSI",
              "Population stability index of the predictions, with the 0.1 and 0.25 bands.",
              [Target(f"max by ({COLOR_KEY}) ({served('turnout_prediction_drift_psi')})",
                      COLOR_LEGEND)],
              width=6, unit="none", defaults=psi_bands,
              custom={"thresholdsStyle": {"mode": "line+area"}}),
        Panel("Drift detected",
              "The server's decision on any pod of a color (turnout_drift_detected). "
              "TurnoutDriftDetected fires after 15 minutes of it.",
              [Target(f"max by ({COLOR_KEY}) ({served('turnout_drift_detected')})",
                      COLOR_LEGEND)],
              kind="state-timeline", width=6,
              defaults={"mappings": value_mappings((0, "no drift", "green"),
                                                   (1, "drift", "red"))}),
        Panel("Rows in the drift window",
              "Rows in each pod's live window (smallest over the pods of a color): the tests "
              "compare this many rows with the reference.",
              [Target(f"min by ({COLOR_KEY}) ({served('turnout_drift_window_rows')})",
                      COLOR_LEGEND)], width=6, defaults={"min": 0}),
        Panel("Missing and unseen values per second",
              "Missing values, and values outside the reference (unseen categories, "
              "non-numbers in numeric features), per feature.",
              [Target(f"sum by ({COLOR_KEY}, feature) "
                      f"({rate('turnout_feature_missing_values_total')})",
                      f"missing {{{{feature}}}} {COLOR_LEGEND}"),
               Target(f"sum by ({COLOR_KEY}, feature) "
                      f"({rate('turnout_feature_unseen_category_total')})",
                      f"unseen {{{{feature}}}} {COLOR_LEGEND}")], width=24, height=7),
    ])  # fmt: skip
    quality = Row("Live quality (from POST /feedback)", [
        Panel("Live MAE and RMSE",
              "Regression models: error over the last labelled predictions (the feedback "
              "window), averaged over the pods of a color. Empty until labels arrive.",
              [Target(f"avg by ({COLOR_KEY}) ({served('turnout_live_mae')})",
                      f"MAE {COLOR_LEGEND}"),
               Target(f"avg by ({COLOR_KEY}) ({served('turnout_live_rmse')})",
                      f"RMSE {COLOR_LEGEND}")], width=6),
        Panel("Live accuracy",
              "Classifiers: accuracy over the last labelled predictions, averaged over the pods "
              "of a color.",
              [Target(f"avg by ({COLOR_KEY}) ({served('turnout_live_accuracy')})",
                      COLOR_LEGEND)], width=6, unit="percentunit", defaults={"max": 1}),
        Panel("Labels per second, by result",
              "Labels received on /feedback: matched to a prediction, unknown request id, "
              "expired (evicted before its label came), invalid.",
              [Target(f"sum by ({COLOR_KEY}, result) ({rate('turnout_feedback_total')})",
                      f"{{{{result}}}} {COLOR_LEGEND}")], width=6),
        Panel("Labelled rows in the quality window",
              "Labelled predictions behind the live metrics (smallest over the pods of a color). "
              f"TurnoutLiveQualityDegraded only looks at pods with {QUALITY_MIN_LABELS} or more "
              "(the line).",
              [Target(f"min by ({COLOR_KEY}) ({served('turnout_live_window_rows')})",
                      COLOR_LEGEND)], width=6,
              defaults={"min": 0, "thresholds": steps(("transparent", None),
                                                      ("orange", QUALITY_MIN_LABELS))},
              custom={"thresholdsStyle": {"mode": "line"}}),
    ])  # fmt: skip
    training = Row("Live against training (the version's MLflow run)", [
        Panel("Live MAE against training",
              "Regression models: live MAE (as in Live MAE and RMSE) next to the `mae` the "
              "version's training run logged in MLflow. TurnoutLiveQualityBelowTraining fires "
              "when live stays over a factor (1.25 by default) times the training figure.",
              [Target(f"avg by ({COLOR_KEY}) ({served('turnout_live_mae')})",
                      f"live {COLOR_LEGEND}"),
               Target(f"max by ({COLOR_KEY}) "
                      f"({served('turnout_training_metric', TRAINING_MAE)})",
                      f"training {COLOR_LEGEND}")], width=12),
        Panel("Live accuracy against training",
              "Classifiers: live accuracy next to the `accuracy` the version's training run "
              "logged. TurnoutLiveQualityBelowTraining fires when live stays under a factor "
              "(0.95 by default) times the training figure.",
              [Target(f"avg by ({COLOR_KEY}) ({served('turnout_live_accuracy')})",
                      f"live {COLOR_LEGEND}"),
               Target(f"max by ({COLOR_KEY}) "
                      f"({served('turnout_training_metric', TRAINING_ACCURACY)})",
                      f"training {COLOR_LEGEND}")],
              width=12, unit="percentunit", defaults={"max": 1}),
    ])  # fmt: skip
    shadow = shadow_row()
    logs_and_limits = Row("Request logs and rate limits", [
        Panel("Payload log entries per second, by result",
              "Sampled live requests (spec.monitoring.payloadLog) by what became of their log "
              "entry: sent to the sink, failed after the retries, or dropped because the "
              "bounded queue was full. Answers are never delayed for the log: anything but "
              "sent is a line lost, never a slower request.",
              [Target(f"sum by ({COLOR_KEY}, result) ({rate('turnout_payload_log_total')})",
                      f"{{{{result}}}} {COLOR_LEGEND}")], width=12, unit="reqps",
              custom={"stacking": {"group": "A", "mode": "normal"}},
              overrides=[dashed_red("(failed|dropped).*")]),
        Panel("Requests refused by the rate limit",
              "429s answered per second because a client (a token, or an address without "
              "auth) spent its spec.rateLimit budget, by endpoint. They are counted with code "
              "429 in the requests per second above too.",
              [Target(f"sum by ({COLOR_KEY}, endpoint) "
                      f"({rate('turnout_rate_limited_total')})",
                      f"{{{{endpoint}}}} {COLOR_LEGEND}")], width=12, unit="reqps"),
    ])  # fmt: skip
    model = Row("Model", [
        Panel("Model load and artifact download time",
              "Seconds each color took to load its model and to download its artifacts "
              "(0: served from the cache), slowest pod.",
              [Target(f"max by ({COLOR_KEY}) ({served('turnout_model_load_seconds')})",
                      f"load {COLOR_LEGEND}", instant=True),
               Target(f"max by ({COLOR_KEY}) ({served('turnout_artifact_download_seconds')})",
                      f"download {COLOR_LEGEND}", instant=True)],
              kind="bargauge", width=10, unit="s"),
        Panel("Served models",
              "What runs now: one line per model version and color, with its MLflow run, flavor "
              "and URI, and how many pods serve it.",
              [Target("count by (namespace, model, version, color, run_id, flavor, uri) "
                      f"({served('turnout_model_info')})", instant=True)],
              kind="table", width=14,
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True},
                  "indexByName": {"namespace": 0, "model": 1, "version": 2, "color": 3,
                                  "Value": 4, "run_id": 5, "flavor": 6, "uri": 7},
                  "renameByName": {"Value": "pods"}}}]),
    ])  # fmt: skip
    variables = [
        query_variable("namespace", "Namespace", "label_values(turnout_model_info, namespace)"),
        query_variable("model", "Model",
                       'label_values(turnout_model_info{namespace=~"$namespace"}, model)'),
        query_variable("version", "Version",
                       'label_values(turnout_model_info{namespace=~"$namespace", '
                       'model=~"$model"}, version)'),
    ]  # fmt: skip
    return dashboard(
        "turnout-serving",
        "turnout / Model serving",
        "Traffic, errors, latency, data drift and live quality of the models turnout serves, "
        "per model version and blue-green color.",
        variables,
        [traffic, drift, quality, training, shadow, logs_and_limits, model],
    )


# --- Rollouts --------------------------------------------------------------------------------

ROLLOUT_FILTER = f'{OPERATOR}, namespace=~"$namespace", modeldeployment=~"$modeldeployment"'


def info(*matchers: str) -> str:
    """turnout_operator_modeldeployment_info filtered on the dashboard's variables."""
    return f"turnout_operator_modeldeployment_info{{{', '.join([ROLLOUT_FILTER, *matchers])}}}"


def increase(counter: str, window: str, label: str = "", values: str = "") -> str:
    """How much an operator counter grew over `window`, where `label` matches `values`."""
    matcher = f', {label}=~"{values}"' if values else ""
    return f"increase({counter}{{{OPERATOR}{matcher}}}[{window}])"


def rollouts(window: str, outcome: str = "") -> str:
    return increase("turnout_operator_rollouts_total", window, "outcome", outcome)


def counted(
    title: str, description: str, expr: Callable[[str], str], by: str, totals_by: str,
    range_title: str, in_range: str, width: int = 16,
) -> list[Panel]:  # fmt: skip
    """An operator counter's two panels: stacked bars per interval by `by`, and its totals
    over the selected range by `totals_by`."""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    totals = " ".join(f"{{{{{label.strip()}}}}}" for label in totals_by.split(","))
    return [
        Panel(title, description, [Target(f"sum by ({by}) ({expr('$__interval')})", legend)],
              width=width, defaults={"min": 0},
              custom={"drawStyle": "bars", "fillOpacity": 80,
                      "stacking": {"group": "A", "mode": "normal"}}),
        Panel(range_title, in_range,
              [Target(f"sum by ({totals_by}) ({expr('$__range')})", totals, instant=True)],
              kind="bargauge", width=8, defaults={"decimals": 0, "min": 0}),
    ]  # fmt: skip


def duration_quantile(quantile: float) -> Target:
    buckets = f"turnout_operator_rollout_duration_seconds_bucket{{{OPERATOR}}}"
    return Target(
        f"histogram_quantile({quantile}, sum by (outcome, le) (increase({buckets}[$__range])))",
        f"p{round(quantile * 100)} {{{{outcome}}}}",
        instant=True,
    )


def analyses(window: str, result: str = "") -> str:
    return increase("turnout_operator_analysis_runs_total", window, "result", result)


RUN_COLUMNS = ("namespace", "modeldeployment", "gate", "version", "phase")
VERDICT_COLUMNS = ("successful", "failed", "inconclusive", "error")


def analysis_row() -> Row:
    """What the gates wait on (strategy.blueGreen.analysis): each ModelDeployment's step and the
    measurements of the analyses its status holds, and the analyses that ended."""
    step = f"turnout_operator_modeldeployment_step{{{ROLLOUT_FILTER}}}"
    measured = 'turnout_operator_analysis_measurements{%s, verdict="%s"}'
    # One instant query per verdict, merged into one row per analysis: Value #A ... #D.
    counts = [Target(f"max by ({', '.join(RUN_COLUMNS)}) ({measured % (ROLLOUT_FILTER, v)})",
                     instant=True) for v in VERDICT_COLUMNS]  # fmt: skip
    values = {f"Value #{chr(ord('A') + i)}": v for i, v in enumerate(VERDICT_COLUMNS)}
    return Row("Analysis", [
        Panel("Step now",
              "The step each ModelDeployment's rollout is at, as kubectl get mdep shows it "
              "(STEP): PrePromotionAnalysis, AnalysisInconclusive (waiting for a person), "
              "MeasuringBaseline, PostPromotionAnalysis, WaitingForPromotion, ...",
              [Target(f"max by (namespace, modeldeployment, step) ({step})", instant=True)],
              kind="table", width=8,
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True, "Value": True},
                  "indexByName": {"namespace": 0, "modeldeployment": 1, "step": 2}}}]),
        Panel("Analyses now",
              "The analyses each ModelDeployment's status holds (its rollout's pre-promotion "
              "analysis, its last switch's post-promotion one): the version measured, the "
              "analysis' phase and its measurements by verdict (error: those in a row, 5 end "
              "it). The figures behind each verdict are in the status and its Events.",
              counts, kind="table", width=16,
              transformations=[
                  {"id": "merge", "options": {}},
                  {"id": "organize", "options": {
                      "excludeByName": {"Time": True},
                      "indexByName": {name: i for i, name in
                                      enumerate([*RUN_COLUMNS, *values])},
                      "renameByName": values}}]),
        *counted("Analyses ended, by gate and verdict",
                 "Analyses that ended per interval: pre_promotion (failed or error: the version "
                 "is rejected) and post_promotion (failed or error: traffic goes back to the old "
                 "color); inconclusive waits for a person. Operator-wide.",
                 analyses, "phase, result", "phase, result", "Analyses in the time range",
                 "Analyses ended in the selected time range, by gate and verdict "
                 "(operator-wide)."),
    ])  # fmt: skip


def retrainings(window: str, result: str = "") -> str:
    return increase("turnout_operator_retraining_total", window, "result", result)


def retraining_row() -> Row:
    """spec.retraining: Jobs started by reason, how they ended, and promotions."""
    return Row("Retraining", [
        *counted("Retrainings by reason and result",
                 "Retraining Jobs per interval: started (by reason: Drift, Quality, Schedule, "
                 "Requested), succeeded, failed (not retried before the cooldown), and with "
                 "promote: alias, promoted or kept. Operator-wide; which ModelDeployment: its "
                 "status.retraining and Events.",
                 retrainings, "reason, result", "result", "Retrainings in the time range",
                 "Retrainings in the selected time range, by result (operator-wide)."),
    ])  # fmt: skip


def rollouts_dashboard() -> dict[str, Any]:
    by_version = "max by (namespace, modeldeployment, version, color)"
    blue, green = (
        f"{by_version} ({info(matcher)})" for matcher in ('color="blue"', 'color="green"')
    )
    now = Row("Now", [
        Panel("ModelDeployments by phase",
              "How many ModelDeployments are in each phase now.",
              [Target(f"count by (phase) ({info()})", "{{phase}}", instant=True)],
              kind="stat", width=8, height=6, defaults={"color": {"mode": "thresholds"},
                                                        "thresholds": steps(("blue", None))},
              overrides=[{"matcher": {"id": "byName", "options": phase}, "properties": [
                  {"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}]}
                  for phase, color in (("Healthy", "green"), ("Degraded", "red"),
                                       ("Progressing", "yellow"), ("Paused", "purple"))]),
        Panel("Operator up",
              "Whether Prometheus reaches the operator's /metrics (TurnoutOperatorDown fires "
              "after 5 minutes without).",
              [Target(f"max(up{{{OPERATOR}}})", instant=True)],
              kind="stat", width=4, height=6,
              defaults={"mappings": value_mappings((0, "DOWN", "red"), (1, "UP", "green"))}),
        Panel("ModelDeployments",
              "Every ModelDeployment with its model, the active version and color (empty "
              "before the first promotion) and its phase.",
              [Target(f"max by (namespace, modeldeployment, model, version, color, phase) "
                      f"({info()})", instant=True)],
              kind="table", width=12, height=6,
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True, "Value": True},
                  "indexByName": {"namespace": 0, "modeldeployment": 1, "model": 2,
                                  "version": 3, "color": 4, "phase": 5},
                  "renameByName": {"version": "active version", "color": "active color"}}}]),
    ])  # fmt: skip
    history = Row("Over time", [
        Panel("Active version and color",
              "Which version each ModelDeployment serves, over time: one line per version, "
              "colored by the blue-green color it is active on. Promotions and aborts are "
              "marked as annotations.",
              [Target(f"{blue} or {green} * 2",
                      "{{namespace}}/{{modeldeployment}} v{{version}}")],
              kind="state-timeline", width=16, height=9,
              defaults={"mappings": value_mappings((1, "blue", "blue"), (2, "green", "green"))},
              options={"showValue": "never"}),
        Panel("Phases over time",
              "ModelDeployments in each phase.",
              [Target(f"count by (phase) ({info()})", "{{phase}}")],
              width=8, height=9, defaults={"min": 0, "decimals": 0},
              custom={"stacking": {"group": "A", "mode": "normal"}, "fillOpacity": 40}),
        *counted("Rollouts by outcome",
                 "Rollouts ended per interval, by outcome: promoted, aborted (smoke test, crash "
                 "loop, deadline, by hand), superseded by a newer version, rolled back. "
                 "Operator-wide (not filtered by namespace).",
                 rollouts, "outcome", "outcome", "Rollouts in the time range",
                 "Rollouts ended in the selected time range, by outcome (operator-wide).",
                 width=8),
        Panel("Rollout duration",
              "From a rollout's start to its end (rolled back: from the promotion to the "
              "rollback), p50 and p95 over the selected time range, by outcome (operator-wide; "
              "from the histogram's buckets, so approximate).",
              [duration_quantile(0.5), duration_quantile(0.95)],
              kind="bargauge", width=8, unit="s"),
        Panel("Reconcile errors per second",
              "Reconciles that raised (retried with backoff). A steady rate means a "
              "ModelDeployment the operator cannot move: see its Events and the operator log.",
              [Target(f"sum(rate(turnout_operator_reconcile_errors_total{{{OPERATOR}}}"
                      "[$__rate_interval]))", "errors/s")], width=16, height=6),
        Panel("MLflow tags waiting",
              "Model-version tags (turnout.dev/<namespace>.<name>) the operator has yet to "
              "write to MLflow. Rollouts never wait for them; a count that stays up means "
              "MLflow is down or refusing, and the registry's audit trail lags behind.",
              [Target(f"sum(turnout_operator_tag_writes_pending{{{OPERATOR}}})", "waiting")],
              width=8, height=6, defaults={"min": 0, "decimals": 0}),
    ])  # fmt: skip
    analysis = analysis_row()
    retraining = retraining_row()
    variables = [
        query_variable("namespace", "Namespace",
                       f"label_values(turnout_operator_modeldeployment_info{{{OPERATOR}}}, "
                       "namespace)"),
        query_variable("modeldeployment", "ModelDeployment",
                       f'label_values(turnout_operator_modeldeployment_info{{{OPERATOR}, '
                       'namespace=~"$namespace"}, modeldeployment)'),
    ]  # fmt: skip
    marks = [
        annotation("Promotions", f"sum by (outcome) ({rollouts('1m', 'promoted')}) > 0", "green",
                   "Promotion", "a new version became active"),
        annotation("Aborts and rollbacks",
                   f"sum by (outcome) ({rollouts('1m', 'aborted|rolled_back')}) > 0", "red",
                   "Rollout {{outcome}}", "a version was rejected; the previous one serves"),
        annotation("Analyses failed or inconclusive",
                   f"sum by (phase, result) ({analyses('1m', 'failed|error|inconclusive')}) > 0",
                   "orange", "Analysis {{result}}",
                   "a {{phase}} analysis ended {{result}}: failed and error reject the version, "
                   "inconclusive waits for a person", tags="phase, result"),
        annotation("Retrainings started or failed",
                   f"sum by (reason, result) ({retrainings('1m', 'started|failed')}) > 0",
                   "purple", "Retraining {{result}}",
                   "a retraining Job ({{reason}}) {{result}}", tags="reason, result"),
    ]  # fmt: skip
    return dashboard(
        "turnout-rollouts",
        "turnout / Rollouts",
        "ModelDeployments and their blue-green rollouts: phases, the active version and color "
        "over time, rollout outcomes and durations, operator errors, the steps and analyses "
        "that gate promotions, retrainings.",
        variables,
        [now, history, analysis, retraining],
        marks,
    )


# --- files -----------------------------------------------------------------------------------

DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "turnout-serving.json": serving_dashboard,
    "turnout-rollouts.json": rollouts_dashboard,
}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="Write nothing; exit 1 if a file is out of date."
    )
    parser.add_argument("--dir", type=Path, default=OUT, help=f"Where the JSON goes ({OUT}).")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path: Path = args.dir / name
        text = render(build())
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} in {args.dir}; run python scripts/dashboards.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
