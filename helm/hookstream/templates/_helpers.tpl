{{/* The release's name prefix for every object, at most 63 characters. */}}
{{- define "hookstream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hookstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "ingest"). */}}
{{- define "hookstream.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The four services: values key, binary, and the variable naming the address their HTTP server
(ingest: API and ops; the others: ops) listens on.
*/}}
{{- define "hookstream.components" -}}
ingest: {values: ingest, binary: hookstream-ingest}
dispatcher: {values: dispatcher, binary: hookstream-dispatcher}
retry-tier: {values: retryTier, binary: hookstream-retry-tier}
replay: {values: replay, binary: hookstream-replay}
{{- end -}}

{{- define "hookstream.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "hookstream.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "hookstream.fullname" .)) -}}
{{- end -}}

{{- define "hookstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "hookstream.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* librdkafka properties for TLS, SASL and the user's own, as key=value,... */}}
{{- define "hookstream.kafkaProperties" -}}
{{- $props := list -}}
{{- $tls := .Values.kafka.tls -}}
{{- $sasl := .Values.kafka.sasl -}}
{{- if and $tls.enabled $sasl.enabled -}}
{{- $props = append $props "security.protocol=SASL_SSL" -}}
{{- else if $tls.enabled -}}
{{- $props = append $props "security.protocol=SSL" -}}
{{- else if $sasl.enabled -}}
{{- $props = append $props "security.protocol=SASL_PLAINTEXT" -}}
{{- end -}}
{{- if and $tls.enabled $tls.caSecret -}}
{{- $props = append $props "ssl.ca.location=/etc/hookstream/kafka-ca/ca.crt" -}}
{{- end -}}
{{- if and $tls.enabled $tls.clientCertSecret -}}
{{- $props = append $props "ssl.certificate.location=/etc/hookstream/kafka-client/tls.crt" -}}
{{- $props = append $props "ssl.key.location=/etc/hookstream/kafka-client/tls.key" -}}
{{- end -}}
{{- if $sasl.enabled -}}
{{- $props = append $props (printf "sasl.mechanism=%s" $sasl.mechanism) -}}
{{- $props = append $props (printf "sasl.username=%s" $sasl.username) -}}
{{- $props = append $props "sasl.password=$(HOOKSTREAM_KAFKA_SASL_PASSWORD)" -}}
{{- end -}}
{{- range $key, $value := .Values.kafka.properties -}}
{{- $props = append $props (printf "%s=%v" $key $value) -}}
{{- end -}}
{{- join "," $props -}}
{{- end -}}

{{/* The Kafka client secrets' volumes and mounts (TLS CA, client certificate). */}}
{{- define "hookstream.kafkaVolumes" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafka.tls.clientCertSecret }}
{{- end }}
{{- end -}}

{{- define "hookstream.kafkaVolumeMounts" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/hookstream/kafka-ca
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret }}
- name: kafka-client
  mountPath: /etc/hookstream/kafka-client
  readOnly: true
{{- end }}
{{- end -}}

{{/* Environment every container shares: secrets first, so later values can refer to them. */}}
{{- define "hookstream.env" -}}
{{- if .Values.secrets.keyRing }}
- name: HOOKSTREAM_SECRET_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "hookstream.secretName" . }}
      key: secret-keys
{{- else }}
- name: HOOKSTREAM_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "hookstream.secretName" . }}
      key: secret-key
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: HOOKSTREAM_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "hookstream.secretName" . }}
      key: kafka-sasl-password
{{- end }}
- name: HOOKSTREAM_KAFKA_PROPERTIES
  value: {{ include "hookstream.kafkaProperties" . | quote }}
{{- end -}}

{{/* A dict as TOML `key = "value"` lines, sorted; a list becomes `a,b` as a variable would
     carry it. Every value is a string: each service parses it as it parses its flag. */}}
{{- define "hookstream.tomlTable" -}}
{{- range $key, $value := . }}
{{- if not (regexMatch "^[a-z0-9_]+$" $key) }}
{{- fail (printf "config key %q is not a setting name (lower case, digits and _)" $key) }}
{{- end }}
{{- $text := toString $value }}
{{- if kindIs "slice" $value }}
{{- $text = join "," $value }}
{{- else if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
{{- /* Helm reads every YAML number as a float: 67108864 would print as 6.7108864e+07. */}}
{{- $text = int64 $value | toString }}
{{- end }}
{{ $key }} = {{ $text | toJson }}
{{- end }}
{{- end -}}
