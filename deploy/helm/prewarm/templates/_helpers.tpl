{{- define "prewarm.image" -}}
{{- $reg := .root.Values.image.registry -}}
{{- if $reg }}{{ $reg }}/{{ end }}{{ .name }}:{{ .root.Values.image.tag }}
{{- end -}}

{{- define "prewarm.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name }}
      key: {{ .ref.key }}
{{- end -}}

{{- define "prewarm.env" -}}
{{- $s := .Values.settings -}}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_DATABASE__URL" "ref" .Values.secrets.databaseUrl) }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_REDIS__URL" "ref" .Values.secrets.redisUrl) }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_S3__ACCESS_KEY_ID" "ref" .Values.secrets.s3AccessKeyId) }}
{{ include "prewarm.secretEnv" (dict "env" "PREWARM_S3__SECRET_ACCESS_KEY" "ref" .Values.secrets.s3SecretAccessKey) }}
- { name: PREWARM_KAFKA__BROKERS, value: {{ $s.kafka.brokers | quote }} }
- { name: PREWARM_KAFKA__TOPIC, value: {{ $s.kafka.topic | quote }} }
- { name: PREWARM_KAFKA__CREATE_TOPIC, value: {{ $s.kafka.createTopic | quote }} }
- { name: PREWARM_S3__ENDPOINT, value: {{ $s.s3.endpoint | quote }} }
- { name: PREWARM_S3__REGION, value: {{ $s.s3.region | quote }} }
- { name: PREWARM_S3__BUCKET, value: {{ $s.s3.bucket | quote }} }
- { name: PREWARM_REDIS__KEY_PREFIX, value: {{ $s.redis.keyPrefix | quote }} }
- { name: PREWARM_POOL__TARGET, value: {{ $s.pool.target | quote }} }
- { name: PREWARM_POOL__COLD_COPY_PARALLELISM, value: {{ $s.pool.coldCopyParallelism | quote }} }
- { name: PREWARM_POOL__COLD_COPY_GLOBAL_LIMIT, value: {{ $s.pool.coldCopyGlobalLimit | quote }} }
- { name: PREWARM_LOG__FORMAT, value: {{ $s.log.format | quote }} }
- { name: PREWARM_LOG__LEVEL, value: {{ $s.log.level | quote }} }
{{- end -}}
