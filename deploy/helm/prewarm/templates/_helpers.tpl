{{/* Names and labels. */}}
{{- define "prewarm.fullname" -}}
{{- printf "%s-prewarm" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prewarm.labels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: prewarm
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "prewarm.selector" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "prewarm.image" -}}
{{- $reg := .root.Values.image.registry -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if $reg }}{{ $reg }}/{{ end }}{{ .name }}:{{ $tag }}
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

{{/* Pod scheduling knobs of one component. */}}
{{- define "prewarm.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The CA bundle for TLS to managed services, mounted read-only at
     /etc/prewarm/ca in every pod when `caBundle` names a ConfigMap or Secret. */}}
{{- define "prewarm.caMount" -}}
{{- if or .Values.caBundle.configMapName .Values.caBundle.secretName }}
volumeMounts:
  - { name: ca-bundle, mountPath: /etc/prewarm/ca, readOnly: true }
{{- end }}
{{- end -}}

{{- define "prewarm.podExtras" -}}
{{- if or .Values.caBundle.configMapName .Values.caBundle.secretName }}
volumes:
  - name: ca-bundle
{{- if .Values.caBundle.configMapName }}
    configMap: { name: {{ .Values.caBundle.configMapName }} }
{{- else }}
    secret: { secretName: {{ .Values.caBundle.secretName }} }
{{- end }}
{{- end }}
serviceAccountName: {{ include "prewarm.serviceAccountName" . }}
{{- end -}}

{{- define "prewarm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (printf "%s-prewarm" (include "prewarm.fullname" .)) .Values.serviceAccount.name }}{{ else }}{{ default "default" .Values.serviceAccount.name }}{{ end }}
{{- end -}}
