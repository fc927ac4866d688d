{{/*
Helpers of the docket chart. The chart keeps to a small template subset (.Values, .Release,
.Chart, include, if/else, with, range, eq, toYaml, nindent, quote, default) so that
crates/docket/tests/deploy.rs can render it without a helm binary.
*/}}

{{/* Labels every object carries. */}}
{{- define "docket.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* The labels a Deployment selects its pods by (plus app.kubernetes.io/component). */}}
{{- define "docket.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The container image. */}}
{{- define "docket.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The ConfigMap with the settings both Deployments share. */}}
{{- define "docket.configName" -}}
{{ .Release.Name }}-env
{{- end }}

{{/* envFrom of both Deployments: the ConfigMap, and the Secret unless told otherwise. */}}
{{- define "docket.envFrom" -}}
- configMapRef:
    name: {{ include "docket.configName" . }}
{{- if .Values.secret.asEnv }}
- secretRef:
    name: {{ .Values.secret.name }}
{{- end }}
{{- end }}

{{/* Probes: liveness on /healthz, readiness on /readyz (both served by every role). */}}
{{- define "docket.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: 5
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  initialDelaySeconds: 2
  periodSeconds: 5
  failureThreshold: 3
{{- end }}
