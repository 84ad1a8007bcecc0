{{- /*
The bundled MLflow's stores (mlflow.backendStore, mlflow.artifactStore): its image, the store
flags of `mlflow server`, and the environment that carries the credentials, always from Secrets.
A database URI goes to MLFLOW_BACKEND_STORE_URI (which `mlflow server` reads) rather than onto
the command line, where every process of the node could read its password.
*/}}

{{/* "true" when the sqlite database or the artifacts live on the volume, else "". */}}
{{- define "turnout.mlflow.usesVolume" -}}
{{- with .Values.mlflow }}
{{- if or (eq .backendStore.type "sqlite") (eq .artifactStore.type "volume") }}true{{ end }}
{{- end }}
{{- end }}

{{/* The image; its drivers variant when a store needs a database driver or boto3. */}}
{{- define "turnout.mlflow.image" -}}
{{- with .Values.mlflow }}
{{- $tag := .image.tag }}
{{- if or (ne .backendStore.type "sqlite") (eq .artifactStore.type "s3") }}
{{- $tag = printf "%s%s" $tag .image.driversSuffix }}
{{- end }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* The store flags of `mlflow server`, as command items. */}}
{{- define "turnout.mlflow.storeArgs" -}}
{{- with .Values.mlflow }}
{{- if eq .backendStore.type "sqlite" }}
- --backend-store-uri
- sqlite:////mlflow/mlflow.db
{{- end }}
{{- if eq .artifactStore.type "s3" }}
{{- with .artifactStore.s3 }}
{{- $bucket := required "mlflow.artifactStore.s3.bucket is required with the s3 artifact store" .bucket }}
{{- $root := trimSuffix "/" (printf "s3://%s/%s" $bucket (trimPrefix "/" .prefix)) }}
{{- if .serveArtifacts }}
- --artifacts-destination
- {{ $root }}
- --serve-artifacts
{{- else }}
- --default-artifact-root
- {{ $root }}
- --no-serve-artifacts
{{- end }}
{{- end }}
{{- else }}
- --artifacts-destination
- /mlflow/artifacts
- --serve-artifacts
{{- end }}
{{- end }}
{{- end }}

{{/* The environment of the stores' credentials, as env items. */}}
{{- define "turnout.mlflow.storeEnv" -}}
{{- with .Values.mlflow.backendStore }}
{{- if ne .type "sqlite" }}
{{- if .uriSecret }}
- name: MLFLOW_BACKEND_STORE_URI
  valueFrom:
    secretKeyRef:
      name: {{ .uriSecret.name }}
      key: {{ .uriSecret.key }}
{{- else }}
{{- $host := required (printf "mlflow.backendStore.host (or uriSecret) is required with the %s backend store" .type) .host }}
{{- $secret := required (printf "mlflow.backendStore.existingSecret (or uriSecret) is required with the %s backend store" .type) .existingSecret }}
{{- $port := int (.port | default (ternary 5432 3306 (eq .type "postgresql"))) }}
{{- $dialect := ternary "postgresql+psycopg2" "mysql+pymysql" (eq .type "postgresql") }}
- name: MLFLOW_DB_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .usernameKey }}
- name: MLFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .passwordKey }}
# Kubernetes puts the two values above in place of $(...).
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "%s://$(MLFLOW_DB_USERNAME):$(MLFLOW_DB_PASSWORD)@%s:%d/%s" $dialect $host $port .database | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.mlflow.artifactStore.type "s3" }}
{{- with .Values.mlflow.artifactStore.s3 }}
{{- with .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.mlflow.artifactStore.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.mlflow.artifactStore.s3.secretAccessKeyKey }}
{{- end }}
{{- with .endpointUrl }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
