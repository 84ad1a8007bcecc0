{{/*
Names, labels and computed settings shared by every template. Object names are truncated to 63
characters (the DNS label limit some fields carry).
*/}}

{{- define "turnout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: the release name, with the chart name added unless present. */}}
{{- define "turnout.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "turnout.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "turnout.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "turnout.labels" -}}
helm.sh/chart: {{ include "turnout.chart" . }}
{{ include "turnout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: turnout
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "turnout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "turnout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator: `<fullname>-operator` (`turnout-operator` for a release named turnout). */}}
{{- define "turnout.operator.fullname" -}}
{{- printf "%s-operator" (include "turnout.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "turnout.operator.labels" -}}
{{ include "turnout.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "turnout.operator.selectorLabels" -}}
{{ include "turnout.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "turnout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "turnout.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "turnout.operator.image" -}}
{{- $image := .Values.operator.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "turnout.servingImage" -}}
{{- $image := .Values.operator.servingImage }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The operator's default tracking URI: the value, else the bundled MLflow, else the
operator's own default (settings.py). */}}
{{- define "turnout.trackingUri" -}}
{{- if .Values.operator.trackingUri }}
{{- .Values.operator.trackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:%d" .Values.mlflow.service.name (include "turnout.namespace" .) (int .Values.mlflow.service.port) }}
{{- else }}
{{- "http://mlflow.mlflow.svc:5000" }}
{{- end }}
{{- end }}

{{/* The bundled MLflow. */}}
{{- define "turnout.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "turnout.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "turnout.mlflow.labels" -}}
{{ include "turnout.labels" . }}
app.kubernetes.io/component: mlflow
{{- end }}

{{- define "turnout.mlflow.selectorLabels" -}}
{{ include "turnout.selectorLabels" . }}
app.kubernetes.io/component: mlflow
{{- end }}

{{/* Host headers the bundled MLflow accepts: its Service's names, localhost, and extras. */}}
{{- define "turnout.mlflow.allowedHosts" -}}
{{- $svc := .Values.mlflow.service.name }}
{{- $ns := include "turnout.namespace" . }}
{{- $hosts := list }}
{{- range (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) "localhost" "127.0.0.1") }}
{{- $hosts = append $hosts . }}
{{- $hosts = append $hosts (printf "%s:*" .) }}
{{- end }}
{{- $hosts = append $hosts (printf "%s.%s.svc.*" $svc $ns) }}
{{- concat $hosts .Values.mlflow.allowedHosts | join "," }}
{{- end }}

{{/* Labels every served model's pods carry (operator/turnout_operator/domain/manifests.py). */}}
{{- define "turnout.servedModelSelector" -}}
app.kubernetes.io/managed-by: turnout
{{- end }}

{{/* Rules the operator needs in every namespace it watches: exactly those of the repository's
manifests/overlays/namespaced/rbac.yaml (and, with the scanning rules, manifests/base/rbac.yaml). */}}
{{- define "turnout.rbac.namespacedRules" -}}
# the ModelDeployments: watched (read from kopf's index), annotations removed, status written
- apiGroups: [turnout.dev]
  resources: [modeldeployments]
  verbs: [list, watch, patch]
- apiGroups: [turnout.dev]
  resources: [modeldeployments/status]
  verbs: [patch]
# the owned objects: watched (a reconcile reads kopf's indexes, never GETs them) and written
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, update, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# the Ingress and the HTTPRoute of spec.ingress and spec.httpRoute
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, create, update, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, create, update, delete]
# retraining Jobs (spec.retraining): created, read, watched
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create]
# scaling (spec.autoscaling): the autoscaler that follows the active color, a disruption
# budget per color
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, update, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, update]
# smoke tests through the API server when the operator runs outside the cluster
- apiGroups: [""]
  resources: [services/proxy]
  verbs: [create]
# analysis (the serving pods' /metrics) and shadow traffic (their /admin/shadow) through the
# API server when the operator runs outside the cluster
- apiGroups: [""]
  resources: [pods/proxy]
  verbs: [get, update, delete]
# registry credentials named by spec.registry.credentialsSecret, the smoke test's token, and
# the serving pods' admin token (a Secret the operator creates once per ModelDeployment)
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* kopf's scanning in cluster-wide mode: which CRDs exist. Watching every namespace needs
no read of Namespace objects (the integration suite records an --all-namespaces run). */}}
{{- define "turnout.rbac.clusterScanningRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{/* The Secret holding the notification channels: the user's, or the one the chart makes. */}}
{{- define "turnout.notifications.secretName" -}}
{{- .Values.operator.notifications.existingSecret | default (printf "%s-notifications" (include "turnout.operator.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* The registry webhook endpoint: its Service and the Secret with its certificate. */}}
{{- define "turnout.webhooks.fullname" -}}
{{- printf "%s-webhooks" (include "turnout.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "turnout.webhooks.tlsSecret" -}}
{{- .Values.webhooks.tls.secretName | default (printf "%s-tls" (include "turnout.webhooks.fullname" .)) }}
{{- end }}

{{/* The Lease the operator's replicas elect their leader with (manifests/base/leader-election.yaml). */}}
{{- define "turnout.rbac.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
# the leader labels its own pod turnout.dev/leader=true (the webhook Service selects it)
- apiGroups: [""]
  resources: [pods]
  verbs: [patch]
{{- end }}
