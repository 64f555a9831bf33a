{{/*
Names, labels and the pieces every callmap pod shares: the image, the
environment (cluster, Kafka), the Kafka secrets as files, the security
context of a non-root component.
*/}}

{{- define "callmap.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix: the release name, with "-callmap" unless it says callmap already. */}}
{{- define "callmap.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 48 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: callmap.component (dict "root" $ "component" "watch"). */}}
{{- define "callmap.component" -}}
{{- printf "%s-%s" (include "callmap.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "callmap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callmap.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "callmap.labels" -}}
{{ include "callmap.selectorLabels" . }}
app.kubernetes.io/part-of: callmap
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Labels of a component's pods: its labels plus podLabels. */}}
{{- define "callmap.podMetadata" -}}
labels:
  {{- include "callmap.labels" . | nindent 2 }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .root.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "callmap.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{ printf "%s@%s" $image.repository $image.digest | quote }}
{{- else -}}
{{ printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) | quote }}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount of every component but the watcher: no API access, no token. */}}
{{- define "callmap.workloadServiceAccount" -}}
{{- include "callmap.fullname" . -}}
{{- end -}}

{{- define "callmap.watchServiceAccount" -}}
{{- include "callmap.component" (dict "root" . "component" "watch") -}}
{{- end -}}

{{/* Where Secrets are mounted, one directory per Secret. */}}
{{- define "callmap.secretDir" -}}
/var/run/secrets/callmap/{{ . }}
{{- end -}}

{{/*
The environment of every component: callmap.env (dict "root" $ "component" "watch").
Secrets travel as files (the ..._FILE variables), never as values.
*/}}
{{- define "callmap.env" -}}
{{- $values := .root.Values -}}
{{- $kafka := $values.kafka -}}
- name: CALLMAP_CLUSTER
  value: {{ required "clusterName is required" $values.clusterName | quote }}
- name: CALLMAP_CLUSTER_DOMAIN
  value: {{ $values.clusterDomain | quote }}
- name: CALLMAP_LOG_LEVEL
  value: {{ $values.logLevel | quote }}
# Metrics on the pod's IP only (the capture agent's is the node's: not every interface).
- name: CALLMAP_METRICS_ADDRESS
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: CALLMAP_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrapServers is required" $kafka.bootstrapServers | quote }}
- name: CALLMAP_KAFKA_SECURITY_PROTOCOL
  value: {{ $kafka.securityProtocol | quote }}
- name: CALLMAP_KAFKA_CLIENT_ID
  value: {{ printf "%s-%s" $kafka.clientIdPrefix .component | quote }}
{{- $sasl := include "callmap.kafkaSaslSecret" . }}
{{- $client := include "callmap.kafkaClientSecret" . }}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
{{- if not $sasl }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.secret or kafka.sasl.secrets.%s (a Secret with the user name and password)" $kafka.securityProtocol (include "callmap.kafkaPrincipalKey" .)) }}
{{- end }}
- name: CALLMAP_KAFKA_SASL_MECHANISM
  value: {{ $kafka.sasl.mechanism | quote }}
- name: CALLMAP_KAFKA_SASL_USERNAME_FILE
  value: {{ include "callmap.secretDir" "kafka-sasl" }}/username
- name: CALLMAP_KAFKA_SASL_PASSWORD_FILE
  value: {{ include "callmap.secretDir" "kafka-sasl" }}/password
{{- end }}
{{- if and (hasSuffix "SSL" $kafka.securityProtocol) $kafka.tls.caSecret }}
- name: CALLMAP_KAFKA_SSL_CAFILE
  value: {{ include "callmap.secretDir" "kafka-ca" }}/ca.crt
{{- end }}
{{- if and (hasSuffix "SSL" $kafka.securityProtocol) $client }}
- name: CALLMAP_KAFKA_SSL_CERTFILE
  value: {{ include "callmap.secretDir" "kafka-client" }}/tls.crt
- name: CALLMAP_KAFKA_SSL_KEYFILE
  value: {{ include "callmap.secretDir" "kafka-client" }}/tls.key
{{- end }}
{{- with $kafka.topics.partitions }}
- name: CALLMAP_TOPIC_PARTITIONS
  value: {{ . | toString | quote }}
{{- end }}
{{- with $kafka.topics.replication }}
- name: CALLMAP_TOPIC_REPLICATION
  value: {{ . | toString | quote }}
{{- end }}
{{- end -}}

{{/*
Which principal a component is, for its own Kafka credentials: the key of
kafka.sasl.secrets and kafka.tls.clientSecrets (every sink kind is "sinks"; the
service-graph exporter and the web map are "map": they read the edges and identity
topics, with no group, and write nothing).
*/}}
{{- define "callmap.kafkaPrincipalKey" -}}
{{- if hasPrefix "sink-" .component }}sinks{{ else if has .component (list "servicegraph" "webmap") }}map{{ else }}{{ .component }}{{ end }}
{{- end -}}

{{/* The component's SASL Secret: its own (kafka.sasl.secrets), else the shared one. */}}
{{- define "callmap.kafkaSaslSecret" -}}
{{- $kafka := .root.Values.kafka -}}
{{- index $kafka.sasl.secrets (include "callmap.kafkaPrincipalKey" .) | default $kafka.sasl.secret -}}
{{- end -}}

{{/* The component's client certificate Secret: its own, else the shared one. */}}
{{- define "callmap.kafkaClientSecret" -}}
{{- $kafka := .root.Values.kafka -}}
{{- index $kafka.tls.clientSecrets (include "callmap.kafkaPrincipalKey" .) | default $kafka.tls.clientSecret -}}
{{- end -}}

{{/* Volumes for the Kafka Secrets that the settings use (each key projected by name):
callmap.kafkaVolumes (dict "root" $ "component" "watch"). */}}
{{- define "callmap.kafkaVolumes" -}}
{{- $kafka := .root.Values.kafka -}}
{{- $sasl := include "callmap.kafkaSaslSecret" . }}
{{- $client := include "callmap.kafkaClientSecret" . }}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
- name: kafka-sasl
  secret:
    secretName: {{ $sasl | quote }}
    defaultMode: 0440
    items:
      - {key: {{ $kafka.sasl.usernameKey | quote }}, path: username}
      - {key: {{ $kafka.sasl.passwordKey | quote }}, path: password}
{{- end }}
{{- if and (hasSuffix "SSL" $kafka.securityProtocol) $kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ $kafka.tls.caSecret | quote }}
    defaultMode: 0444
    items:
      - {key: {{ $kafka.tls.caKey | quote }}, path: ca.crt}
{{- end }}
{{- if and (hasSuffix "SSL" $kafka.securityProtocol) $client }}
- name: kafka-client
  secret:
    secretName: {{ $client | quote }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- end }}
{{- end -}}

{{- define "callmap.kafkaVolumeMounts" -}}
{{- $kafka := .root.Values.kafka -}}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
- {name: kafka-sasl, mountPath: {{ include "callmap.secretDir" "kafka-sasl" }}, readOnly: true}
{{- end }}
{{- if and (hasSuffix "SSL" $kafka.securityProtocol) $kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: {{ include "callmap.secretDir" "kafka-ca" }}, readOnly: true}
{{- end }}
{{- if and (hasSuffix "SSL" $kafka.securityProtocol) (include "callmap.kafkaClientSecret" .) }}
- {name: kafka-client, mountPath: {{ include "callmap.secretDir" "kafka-client" }}, readOnly: true}
{{- end }}
{{- end -}}

{{/* The pod security context of every component but the capture agent. */}}
{{- define "callmap.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The container security context of every component but the capture agent. */}}
{{- define "callmap.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Probes on the metrics port: the process serves it for as long as it runs, and
/healthz fails while a part of it has stopped (the capture agent's DNS thread). */}}
{{- define "callmap.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  initialDelaySeconds: 10
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 5
{{- end -}}

{{/* Scheduling of one component: callmap.scheduling .Values.watch */}}
{{- define "callmap.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* A preferred spread over nodes, unless affinity is given: callmap.affinity (dict "root" $ "component" "watch" "affinity" .Values.watch.affinity) */}}
{{- define "callmap.affinity" -}}
affinity:
{{- if .affinity }}
  {{- toYaml .affinity | nindent 2 }}
{{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "callmap.selectorLabels" . | nindent 14 }}
{{- end }}
{{- end -}}
