{{/* Names, labels and image references shared by every template. */}}

{{- define "fireweave-ai.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already contains the chart name. */}}
{{- define "fireweave-ai.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fireweave-ai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fireweave-ai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "fireweave-ai.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fireweave-ai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fireweave-ai
{{- end -}}

{{- define "fireweave-ai.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "fireweave-ai.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The worker Pods' ServiceAccount; empty means each namespace's default account. */}}
{{- define "fireweave-ai.workerServiceAccountName" -}}
{{- if .Values.workers.serviceAccount.create -}}
{{- .Values.workers.serviceAccount.name | default (printf "%s-worker" (include "fireweave-ai.fullname" .)) -}}
{{- else -}}
{{- .Values.workers.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fireweave-ai.artifactClaimName" -}}
{{- .Values.artifacts.existingClaim | default (printf "%s-artifacts" (include "fireweave-ai.fullname" .)) -}}
{{- end -}}

{{/*
An image reference from {registry, repository, tag, digest}: global.imageRegistry replaces the registry, an
empty tag means the chart's appVersion, and a digest pins the content. Call with (dict "root" $ "image" ...).
*/}}
{{- define "fireweave-ai.image" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry -}}
{{- $ref := printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- if $registry -}}
{{- $ref = printf "%s/%s" $registry $ref -}}
{{- end -}}
{{- if .image.digest -}}
{{- $ref = printf "%s@%s" $ref .image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/*
Namespaces that get per-namespace objects (worker ServiceAccount, namespaced RBAC): the watched ones, or the
release namespace alone when the operator watches all namespaces. Returned as a JSON list.
*/}}
{{- define "fireweave-ai.workloadNamespaces" -}}
{{- $all := list .Release.Namespace -}}
{{- range .Values.watchNamespaces -}}
{{- $all = append $all . -}}
{{- end -}}
{{- $all | uniq | toJson -}}
{{- end -}}

{{/* The namespaces the operator is told to watch: FIREWEAVE_NAMESPACES. Empty means all. */}}
{{- define "fireweave-ai.watchedNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- join "," .Values.watchNamespaces -}}
{{- else if eq .Values.rbac.scope "namespace" -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Hardened container security context, the same as the operator gives its worker containers. */}}
{{- define "fireweave-ai.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
