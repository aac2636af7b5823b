{{/* Names and labels. */}}
{{/* The chart's name: "prewarm", or nameOverride. */}}
{{- define "prewarm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object's name: fullnameOverride, else <release>-<name>
     (always both, as before: a release named "prewarm" gives "prewarm-prewarm"). */}}
{{- define "prewarm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "prewarm.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of an object: the standard ones, then `extra` (the object's own,
     e.g. serviceMonitor.labels), then `commonLabels`; on a clash the first wins,
     so a common label never replaces a standard one (the selectors use them).
     Call with (dict "root" $ "component" "<name>" ["extra" <map>]). */}}
{{- define "prewarm.labels" -}}
{{- $root := .root -}}
{{- $labels := dict
      "app.kubernetes.io/name" .component
      "app.kubernetes.io/instance" $root.Release.Name
      "app.kubernetes.io/part-of" (include "prewarm.name" $root)
      "app.kubernetes.io/version" (toString $root.Chart.AppVersion)
      "app.kubernetes.io/managed-by" $root.Release.Service
      "helm.sh/chart" (printf "%s-%s" $root.Chart.Name $root.Chart.Version) -}}
{{- $labels = merge $labels (.extra | default dict) ($root.Values.commonLabels | default dict) -}}
{{- toYaml $labels -}}
{{- end -}}

{{- define "prewarm.selector" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Labels of a component's pods: the selector, then the component's
     `podLabels`, then `commonLabels` (the selector wins a clash). Call with
     (dict "root" $ "component" "<name>" "values" <component values>). */}}
{{- define "prewarm.podLabels" -}}
{{- $labels := include "prewarm.selector" . | fromYaml -}}
{{- $labels = merge $labels (.values.podLabels | default dict) (.root.Values.commonLabels | default dict) -}}
{{- toYaml $labels -}}
{{- end -}}

{{- define "prewarm.image" -}}
{{- $reg := .root.Values.image.registry -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if $reg }}{{ $reg }}/{{ end }}{{ .name }}:{{ $tag }}
{{- end -}}

{{/* A value rendered as a template (Bitnami's tplvalues): lists and maps of
     extraEnvVars, extraVolumes, initContainers, sidecars... may use
     {{ include "prewarm.fullname" . }} and the like. */}}
{{- define "prewarm.tplvalues" -}}
{{- if typeIs "string" .value -}}
{{- tpl .value .root -}}
{{- else -}}
{{- tpl (toYaml .value) .root -}}
{{- end -}}
{{- end -}}

{{/* One env entry read from a Secret. */}}
{{- define "prewarm.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name }}
      key: {{ .ref.key }}
{{- end -}}

{{/* The secrets both services read. */}}
{{- define "prewarm.secrets" -}}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_ADMIN_TOKEN" "ref" .Values.secrets.adminToken) }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_DATABASE__URL" "ref" .Values.secrets.databaseUrl) }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_REDIS__URL" "ref" .Values.secrets.redisUrl) }}
{{- if .Values.secrets.kafkaSaslPassword.name }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_KAFKA__PROPERTIES__SASL_PASSWORD" "ref" .Values.secrets.kafkaSaslPassword) }}
{{- end }}
{{- if .Values.secrets.s3AccessKeyId.name }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_S3__ACCESS_KEY_ID" "ref" .Values.secrets.s3AccessKeyId) }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_S3__SECRET_ACCESS_KEY" "ref" .Values.secrets.s3SecretAccessKey) }}
{{- end }}
{{- end -}}

{{/* config.<section>.<key> -> PREWARM_<SECTION>__<KEY>; empty strings are left out. */}}
{{- define "prewarm.configData" -}}
{{- range $section, $keys := .Values.config }}
{{- range $key, $value := $keys }}
{{- if kindIs "map" $value }}
{{- /* A map (kafka.properties): one variable per entry, dots as underscores. */}}
{{- range $name, $entry := $value }}
{{ printf "PREWARM_%s__%s__%s" (upper $section) (upper $key) (upper (replace "." "_" $name)) }}: {{ toString $entry | quote }}
{{- end }}
{{- else if ne (toString $value) "" }}
{{- /* Helm reads YAML numbers as float64: print whole numbers as integers. */}}
{{- $text := toString $value }}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}{{ $text = toString (int64 $value) }}{{ end }}
{{ printf "PREWARM_%s__%s" (upper $section) (upper $key) }}: {{ $text | quote }}
{{- end }}
{{- end }}
{{- end }}
PREWARM_SERVER__HOST: "0.0.0.0"
PREWARM_SERVER__PORT: {{ .Values.api.port | quote }}
PREWARM_SERVER__METRICS_PORT: {{ .Values.api.metricsPort | quote }}
PREWARM_WORKER__HTTP_HOST: "0.0.0.0"
PREWARM_WORKER__HTTP_PORT: {{ .Values.worker.metricsPort | quote }}
PREWARM_DATABASE__MIGRATE: {{ not .Values.migrations.enabled | quote }}
{{- end -}}

{{/* Pod scheduling of one component: nodeSelector, tolerations, affinity
     (the component's own `affinity`, else its `podAntiAffinityPreset`),
     topologySpreadConstraints. Call with (dict "root" $ "component" "<name>"
     "values" <component values>). */}}
{{- define "prewarm.scheduling" -}}
{{- $v := .values -}}
{{- with $v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity: {{- toYaml $v.affinity | nindent 2 }}
{{- else if $v.podAntiAffinityPreset }}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "prewarm.selector" . | fromYaml)) "topologyKey" "kubernetes.io/hostname" }}
affinity:
  podAntiAffinity:
    {{- if eq $v.podAntiAffinityPreset "hard" }}
    requiredDuringSchedulingIgnoredDuringExecution:
      {{- toYaml (list $term) | nindent 6 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      {{- toYaml (list (dict "weight" 1 "podAffinityTerm" $term)) | nindent 6 }}
    {{- end }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
{{- /* A constraint without a labelSelector gets the component's pods. */}}
{{- $constraints := list }}
{{- range . }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "prewarm.selector" $ | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $c }}
{{- end }}
topologySpreadConstraints: {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pod-level fields both Deployments share (not containers, not
     scheduling). Call with (dict "root" $ "component" ... "values" ...). */}}
{{- define "prewarm.podSpec" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "prewarm.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.automountServiceAccountToken }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.podSecurityContext }}
securityContext: {{- toYaml . | nindent 2 }}
{{- end }}
{{- include "prewarm.volumes" . }}
{{- with $v.initContainers }}
initContainers: {{- include "prewarm.tplvalues" (dict "value" . "root" $root) | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Volumes of a pod: the CA bundle, then the component's extraVolumes. */}}
{{- define "prewarm.volumes" -}}
{{- $root := .root -}}
{{- $ca := $root.Values.caBundle -}}
{{- $extra := .values.extraVolumes -}}
{{- if or $ca.configMapName $ca.secretName $extra }}
volumes:
{{- if or $ca.configMapName $ca.secretName }}
  - name: ca-bundle
{{- if $ca.configMapName }}
    configMap: { name: {{ $ca.configMapName }} }
{{- else }}
    secret: { secretName: {{ $ca.secretName }} }
{{- end }}
{{- end }}
{{- with $extra }}
  {{- include "prewarm.tplvalues" (dict "value" . "root" $root) | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volume mounts of a service container: the CA bundle at /etc/prewarm/ca
     (TLS to managed services), then the component's extraVolumeMounts. */}}
{{- define "prewarm.volumeMounts" -}}
{{- $ca := .root.Values.caBundle -}}
{{- $extra := .values.extraVolumeMounts -}}
{{- if or $ca.configMapName $ca.secretName $extra }}
volumeMounts:
{{- if or $ca.configMapName $ca.secretName }}
  - { name: ca-bundle, mountPath: /etc/prewarm/ca, readOnly: true }
{{- end }}
{{- with $extra }}
  {{- include "prewarm.tplvalues" (dict "value" . "root" $.root) | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* envFrom and env of a service container: the chart's ConfigMap, the
     component's extraEnvVarsSecret, the secrets, then extraEnvVars (last, so
     an entry of the same name replaces the chart's). */}}
{{- define "prewarm.containerEnv" -}}
{{- $root := .root -}}
envFrom:
  - configMapRef:
      name: {{ include "prewarm.fullname" $root }}-config
{{- with .values.extraEnvVarsSecret }}
  - secretRef:
      name: {{ tpl . $root }}
{{- end }}
env:
  {{- include "prewarm.secrets" $root | nindent 2 }}
{{- with .values.extraEnvVars }}
  {{- include "prewarm.tplvalues" (dict "value" . "root" $root) | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "prewarm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (printf "%s-prewarm" (include "prewarm.fullname" .)) .Values.serviceAccount.name }}{{ else }}{{ default "default" .Values.serviceAccount.name }}{{ end }}
{{- end -}}

{{/* The port of a URL: its explicit port, else 443 for https, 80 otherwise. */}}
{{- define "prewarm.urlPort" -}}
{{- $u := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- if $port }}{{ $port }}{{ else if eq $u.scheme "https" }}443{{ else }}80{{ end }}
{{- end -}}

{{/* Egress rules of a component's NetworkPolicy. Call with (dict "root" $
     "component" ...). */}}
{{- define "prewarm.egressRules" -}}
{{- $root := .root -}}
{{- $np := $root.Values.networkPolicy -}}
{{- $egress := $np.egress -}}
# DNS.
- ports:
    - { port: 53, protocol: UDP }
    - { port: 53, protocol: TCP }
  {{- with $egress.dns.to }}
  to: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- range $service := list "postgres" "redis" "kafka" "s3" }}
{{- $peer := index $egress $service }}
# {{ $service }}{{ if not $peer.to }} (any destination on these ports){{ end }}.
- ports:
    {{- range $peer.ports }}
    - { port: {{ . }}, protocol: TCP }
    {{- end }}
  {{- with $peer.to }}
  to: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if $egress.configUrls }}
{{- $urls := list }}
{{- if eq .component "template-api" }}{{ $urls = append $urls $root.Values.config.similar.upstream_url }}{{ end }}
{{- $urls = append $urls $root.Values.config.trace.otlp_endpoint }}
{{- range $url := $urls }}
{{- if $url }}
# {{ $url }} (from config; any destination on its port).
- ports:
    - { port: {{ include "prewarm.urlPort" $url }}, protocol: TCP }
{{- end }}
{{- end }}
{{- end }}
{{- with $np.extraEgress }}
{{ include "prewarm.tplvalues" (dict "value" . "root" $root) }}
{{- end }}
{{- end -}}
