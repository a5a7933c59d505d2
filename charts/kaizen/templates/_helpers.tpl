{{/* The release's full name: <release>-operator, so `helm install kaizen` gives the Service name the
operator's default progress URL names (kaizen-operator.<namespace>.svc). */}}
{{- define "kaizen.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (.Values.nameOverride | default "operator") | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kaizen.selectorLabels" -}}
app.kubernetes.io/name: kaizen-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kaizen.labels" -}}
{{ include "kaizen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kaizen
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kaizen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "kaizen.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "kaizen.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The operator's settings file (operator/kaizen_operator/settings.py field names): what the values
name, with `settings` laid over it. */}}
{{- define "kaizen.config" -}}
{{- $progressUrl := .Values.progressUrl | default (printf "http://%s.%s.svc:%d" (include "kaizen.fullname" .) .Release.Namespace (int .Values.service.progressPort)) -}}
{{- $config := dict
  "runner_image" (.Values.runner.image | default (include "kaizen.image" .))
  "image_pull_policy" .Values.runner.pullPolicy
  "image_pull_secrets" .Values.runner.imagePullSecrets
  "progress_url" $progressUrl
  "progress_port" (int .Values.service.progressPort)
  "metrics_port" (int .Values.service.metricsPort)
  "quotas" (dict
    "max_pipelines" .Values.quotas.maxPipelines
    "max_concurrent_runs" .Values.quotas.maxConcurrentRuns
    "max_nodes_per_run" .Values.quotas.maxNodesPerRun)
-}}
{{- if .Values.runner.serviceAccount -}}
{{- $_ := set $config "run_service_account" .Values.runner.serviceAccount -}}
{{- end -}}
{{- if .Values.catalog.models -}}
{{- $_ := set $config "catalog_path" "/etc/kaizen/catalog.yaml" -}}
{{- end -}}
{{- toYaml (mergeOverwrite $config (deepCopy .Values.settings)) -}}
{{- end -}}
