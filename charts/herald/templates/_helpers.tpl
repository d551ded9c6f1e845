{{/*
Names, labels and the list of workloads. Every define is namespaced "herald.".
A "workload" is one Deployment: the gateway, a router per lane, a sender per channel x lane,
the tracker, the webhooks service and the scheduler. herald.workloads builds that list once; deployment.yaml, hpa.yaml,
pdb.yaml, scaledobject.yaml and service-metrics.yaml all range over it.
*/}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.fullname" -}}
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

{{/* Name of one workload's resources: (list $ $workload). */}}
{{- define "herald.workloadName" -}}
{{- $root := index . 0 }}{{- $w := index . 1 }}
{{- printf "%s-%s" (include "herald.fullname" $root) $w.component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. Pass the root context. */}}
{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" . }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: name and instance only. */}}
{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one workload's resources: (list $ $workload). */}}
{{- define "herald.workloadLabels" -}}
{{- $root := index . 0 }}{{- $w := index . 1 -}}
{{ include "herald.labels" $root }}
app.kubernetes.io/component: {{ $w.component }}
{{- include "herald.laneChannelLabels" $w }}
{{- end }}

{{- define "herald.laneChannelLabels" -}}
{{- with .lane }}
herald.io/lane: {{ . }}
{{- end }}
{{- with .channel }}
herald.io/channel: {{ . }}
{{- end }}
{{- end }}

{{/* Selector labels of one workload: name, instance and component. (list $ $workload). */}}
{{- define "herald.workloadSelectorLabels" -}}
{{- $root := index . 0 }}{{- $w := index . 1 -}}
{{ include "herald.selectorLabels" $root }}
app.kubernetes.io/component: {{ $w.component }}
{{- end }}

{{/* Pod labels: no chart version, so a chart bump alone does not restart pods. (list $ $workload). */}}
{{- define "herald.podLabels" -}}
{{- $root := index . 0 }}{{- $w := index . 1 -}}
{{ include "herald.workloadSelectorLabels" . }}
app.kubernetes.io/part-of: herald
{{- include "herald.laneChannelLabels" $w }}
{{- with $root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "herald.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding credentials: yours, or "<fullname>" (which secrets.create makes). */}}
{{- define "herald.secretName" -}}
{{- default (include "herald.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Deep merge of (list $dst $src) into $dst, in place. Unlike sprig's mergeOverwrite it also copies
false and 0, so an override can switch autoscaling off for one lane.
*/}}
{{- define "herald.deepMerge" -}}
{{- $dst := index . 0 }}{{- $src := index . 1 }}
{{- range $k, $v := $src }}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) }}
{{- include "herald.deepMerge" (list (get $dst $k) $v) }}
{{- else }}
{{- $_ := set $dst $k $v }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Collects the enabled workloads into $ctx.items. Call with (dict "root" $ "items" list).
Each item: component, args, port, portName, lane, channel, consumer, topic, group, settings.
*/}}
{{- define "herald.workloads" -}}
{{- $ := .root }}
{{- $v := $.Values }}
{{- $p := $v.kafka.topicPrefix }}
{{- $items := list }}
{{- if $v.gateway.enabled }}
{{- $items = append $items (dict "component" "gateway" "args" (list "gateway") "port" 8080 "portName" "http" "lane" "" "channel" "" "consumer" false "settings" (deepCopy $v.gateway)) }}
{{- end }}
{{- if $v.router.enabled }}
{{- range $lane := $v.router.lanes }}
{{- $s := deepCopy (omit $v.router "lanes" "overrides") }}
{{- include "herald.deepMerge" (list $s (deepCopy (get $v.router.overrides $lane | default dict))) }}
{{- $items = append $items (dict "component" (printf "router-%s" $lane) "args" (list "router" "--lane" $lane) "port" 9090 "portName" "metrics" "lane" $lane "channel" "" "consumer" true "topic" (printf "%s.requests.%s" $p $lane) "group" (printf "%s.router.%s" $p $lane) "settings" $s) }}
{{- end }}
{{- end }}
{{- if $v.sender.enabled }}
{{- range $channel := $v.sender.channels }}
{{- range $lane := $v.sender.lanes }}
{{- $key := printf "%s-%s" $channel $lane }}
{{- $s := deepCopy (omit $v.sender "channels" "lanes" "overrides") }}
{{- include "herald.deepMerge" (list $s (deepCopy (get $v.sender.overrides $key | default dict))) }}
{{- $items = append $items (dict "component" (printf "sender-%s" $key) "args" (list "sender" "--channel" $channel "--lane" $lane) "port" 9090 "portName" "metrics" "lane" $lane "channel" $channel "consumer" true "topic" (printf "%s.deliveries.%s.%s" $p $channel $lane) "group" (printf "%s.sender.%s.%s" $p $channel $lane) "settings" $s) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $v.tracker.enabled }}
{{- $items = append $items (dict "component" "tracker" "args" (list "tracker") "port" 9090 "portName" "metrics" "lane" "" "channel" "" "consumer" true "topic" (printf "%s.status" $p) "group" (printf "%s.tracker" $p) "settings" (deepCopy $v.tracker)) }}
{{- end }}
{{- if $v.webhooks.enabled }}
{{- $items = append $items (dict "component" "webhooks" "args" (list "webhooks") "port" 9090 "portName" "metrics" "lane" "" "channel" "" "consumer" true "topic" (printf "%s.status" $p) "group" (printf "%s.webhooks" $p) "settings" (deepCopy $v.webhooks)) }}
{{- end }}
{{- if $v.scheduler.enabled }}
{{- $items = append $items (dict "component" "scheduler" "args" (list "scheduler") "port" 9090 "portName" "metrics" "lane" "" "channel" "" "consumer" false "settings" (deepCopy $v.scheduler)) }}
{{- end }}
{{- if $v.campaigns.enabled }}
{{- $items = append $items (dict "component" "campaigns" "args" (list "campaigns") "port" 9090 "portName" "metrics" "lane" "" "channel" "" "consumer" false "settings" (deepCopy $v.campaigns)) }}
{{- end }}
{{- $_ := set . "items" $items }}
{{- end }}

{{/* "true" when KEDA owns the workload's replica count. */}}
{{- define "herald.kedaEnabled" -}}
{{- $s := .settings }}
{{- if and .consumer $s.keda $s.keda.enabled }}true{{ end }}
{{- end }}

{{/* "true" when an HPA or a KEDA ScaledObject owns the replica count (no replicas field then). */}}
{{- define "herald.autoscaled" -}}
{{- if or .settings.autoscaling.enabled (include "herald.kedaEnabled" .) }}true{{ end }}
{{- end }}

{{/* Fewest pods the workload runs: decides whether a PDB makes sense. */}}
{{- define "herald.minReplicas" -}}
{{- $s := .settings }}
{{- if $s.autoscaling.enabled }}
{{- int $s.autoscaling.minReplicas }}
{{- else if include "herald.kedaEnabled" . }}
{{- int $s.keda.minReplicaCount }}
{{- else }}
{{- int $s.replicas }}
{{- end }}
{{- end }}

{{/*
Grace period of one workload: (list $ $workload). It must exceed the drain timeout plus any preStop
sleep, because Kubernetes sends SIGKILL when it runs out. Unset, it is that sum plus 10 seconds.
*/}}
{{- define "herald.gracePeriod" -}}
{{- $root := index . 0 }}{{- $w := index . 1 }}
{{- $drain := int $root.Values.drainTimeoutSeconds }}
{{- $needed := add $drain (int ($w.settings.preStopSleepSeconds | default 0)) }}
{{- $grace := $root.Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $grace }}
{{- add $needed 10 }}
{{- else if le (int $grace) $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than drainTimeoutSeconds (%d) plus the %s preStop sleep (%d): the pod would be killed mid-drain" (int $grace) $drain $w.component (sub $needed $drain)) }}
{{- else }}
{{- int $grace }}
{{- end }}
{{- end }}

{{/* Release-wide checks the schema cannot express. */}}
{{- define "herald.validate" -}}
{{- if and .Values.secrets.create .Values.secrets.existingSecret }}
{{- fail "set either secrets.existingSecret or secrets.create, not both" }}
{{- end }}
{{- if and (hasPrefix "SASL_" .Values.kafka.securityProtocol) (not .Values.kafka.sasl.existingSecret) }}
{{- fail "kafka.securityProtocol SASL_* needs kafka.sasl.existingSecret with the username and password" }}
{{- end }}
{{- if and .Values.kafka.tls.clientCertificate (not .Values.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.clientCertificate needs kafka.tls.existingSecret holding tls.crt and tls.key" }}
{{- end }}
{{- $ctx := dict "root" . "items" list }}
{{- include "herald.workloads" $ctx }}
{{- range $w := $ctx.items }}
{{- if and $w.settings.autoscaling.enabled (include "herald.kedaEnabled" $w) }}
{{- fail (printf "%s: autoscaling.enabled and keda.enabled are both true; KEDA creates its own HPA, so turn one off" $w.component) }}
{{- end }}
{{- end }}
{{- end }}

{{/* SASL credentials from kafka.sasl.existingSecret, for every Kafka client (workloads and the topics Job). */}}
{{- define "herald.kafkaSecretEnv" -}}
{{- $k := .Values.kafka }}
{{- if hasPrefix "SASL_" $k.securityProtocol }}
- name: HERALD_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $k.sasl.existingSecret }}, key: {{ $k.sasl.usernameKey }}}
- name: HERALD_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $k.sasl.existingSecret }}, key: {{ $k.sasl.passwordKey }}}
{{- end }}
{{- end }}

{{/* The Kafka TLS Secret mounted at /etc/herald/kafka (volume and mount), when there is one. */}}
{{- define "herald.kafkaTlsMount" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/herald/kafka
  readOnly: true
{{- end }}
{{- end }}

{{- define "herald.kafkaTlsVolume" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* Pod and container security contexts: the "restricted" Pod Security Standard. */}}
{{- define "herald.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "herald.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Credentials one workload needs from the Secret: (list $ $workload). Least privilege per service. */}}
{{- define "herald.secretEnv" -}}
{{- $root := index . 0 }}{{- $w := index . 1 }}
{{- $secret := include "herald.secretName" $root }}
{{- $keys := $root.Values.secrets.keys }}
{{- if eq $w.component "gateway" }}
- name: HERALD_ADMIN_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $keys.adminToken }}}
- name: HERALD_TWILIO_AUTH_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $keys.twilioAuthToken }}, optional: true}
{{- else if eq $w.channel "email" }}
- name: HERALD_SMTP_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $keys.smtpPassword }}, optional: true}
- name: HERALD_SENDGRID_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $keys.sendgridApiKey }}, optional: true}
{{- else if eq $w.channel "sms" }}
- name: HERALD_TWILIO_AUTH_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $keys.twilioAuthToken }}, optional: true}
{{- else if eq $w.channel "push" }}
- name: HERALD_FCM_CREDENTIALS_FILE
  value: /var/run/secrets/herald/fcm/credentials.json
{{- end }}
{{- include "herald.kafkaSecretEnv" $root }}
{{- if $root.Values.redis.existingSecret }}
- name: HERALD_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ $root.Values.redis.existingSecret }}, key: {{ $root.Values.redis.existingSecretKey }}}
{{- end }}
{{- end }}

{{/*
Non-secret settings one workload needs beyond the shared ConfigMap: (list $ $workload). Provider,
receipt, retry and scheduling settings go only to the workloads that read them: receipts to the
gateway (and the public base URL to sms senders, for the Twilio callback), each provider's endpoint,
account, failover order and shared rate limit to the senders of its channel, retries and breakers to
every sender, report-queued to the routers, lease and batch to the scheduler. Optional settings left
empty (or null) are not set, so the service default applies.
*/}}
{{/* Where webhooks may point (the gateway checks on save, the webhooks service on every attempt):
(list $webhooksValues $envDict). */}}
{{- define "herald.webhookTargetsEnv" -}}
{{- $wh := index . 0 }}{{- $env := index . 1 }}
{{- with $wh.allowHosts }}{{ $_ := set $env "HERALD_WEBHOOK_ALLOW_HOSTS" (join "," .) }}{{ end }}
{{- if $wh.allowPrivate }}{{ $_ := set $env "HERALD_WEBHOOK_ALLOW_PRIVATE" "true" }}{{ end }}
{{- end }}

{{- define "herald.settingsEnv" -}}
{{- $root := index . 0 }}{{- $w := index . 1 }}
{{- $v := $root.Values }}
{{- $p := $v.providers }}
{{- $s := $w.settings }}
{{- $env := dict }}
{{- if eq $w.component "gateway" }}
{{- $_ := set $env "HERALD_HTTP_HOST" "0.0.0.0" }}
{{- $_ := set $env "HERALD_HTTP_PORT" 8080 }}
{{- $r := $v.receipts }}
{{- with $r.publicBaseUrl }}{{ $_ := set $env "HERALD_PUBLIC_BASE_URL" . }}{{ end }}
{{- with $r.sendgridWebhookPublicKey }}{{ $_ := set $env "HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY" . }}{{ end }}
{{- $_ := set $env "HERALD_SENDGRID_WEBHOOK_MAX_AGE_S" (int $r.sendgridWebhookMaxAgeSeconds) }}
{{- $_ := set $env "HERALD_RECEIPT_DEDUPE_TTL_S" (int $r.dedupeTtlSeconds) }}
{{- include "herald.webhookTargetsEnv" (list $v.webhooks $env) }}
{{- else if hasPrefix "router-" $w.component }}
{{- if not (kindIs "invalid" $s.reportQueued) }}
{{- $_ := set $env "HERALD_ROUTER_REPORT_QUEUED" $s.reportQueued }}
{{- end }}
{{- with $v.receipts.publicBaseUrl }}{{ $_ := set $env "HERALD_PUBLIC_BASE_URL" . }}{{ end }}
{{- else if eq $w.component "webhooks" }}
{{- include "herald.webhookTargetsEnv" (list $s $env) }}
{{- $_ := set $env "HERALD_WEBHOOK_TIMEOUT_S" $s.timeoutSeconds }}
{{- $_ := set $env "HERALD_WEBHOOK_RETRY_BASE_DELAY_S" $s.retryBaseDelaySeconds }}
{{- $_ := set $env "HERALD_WEBHOOK_RETRY_MAX_DELAY_S" $s.retryMaxDelaySeconds }}
{{- $_ := set $env "HERALD_WEBHOOK_RETRY_FOR_S" $s.retryForSeconds }}
{{- $_ := set $env "HERALD_WEBHOOK_PAUSE_AFTER_S" $s.pauseAfterSeconds }}
{{- $_ := set $env "HERALD_WEBHOOK_PAUSE_MIN_FAILURES" (int $s.pauseMinFailures) }}
{{- else if eq $w.component "campaigns" }}
{{- $_ := set $env "HERALD_CAMPAIGNS_LEASE_S" $s.leaseSeconds }}
{{- $_ := set $env "HERALD_CAMPAIGNS_BATCH_MAX" (int $s.batchMax) }}
{{- $_ := set $env "HERALD_CAMPAIGNS_MAX_RUNNING" (int $s.maxRunning) }}
{{- else if eq $w.component "scheduler" }}
{{- $_ := set $env "HERALD_SCHEDULER_POLL_INTERVAL_S" $s.pollIntervalSeconds }}
{{- $_ := set $env "HERALD_SCHEDULER_LEASE_S" $s.leaseSeconds }}
{{- $_ := set $env "HERALD_SCHEDULER_BATCH" (int $s.batch) }}
{{- else if $w.channel }}
{{- $_ := set $env "HERALD_RETRY_MAX_ATTEMPTS" (int $s.retry.maxAttempts) }}
{{- $_ := set $env "HERALD_RETRY_BASE_DELAY_S" $s.retry.baseDelaySeconds }}
{{- $_ := set $env "HERALD_RETRY_MAX_DELAY_S" $s.retry.maxDelaySeconds }}
{{- $_ := set $env "HERALD_BREAKER_FAILURE_THRESHOLD" (int $s.breaker.failureThreshold) }}
{{- $_ := set $env "HERALD_BREAKER_COOLDOWN_S" $s.breaker.cooldownSeconds }}
{{- $_ := set $env "HERALD_RATE_LIMIT_BULK_RESERVE" $p.rateLimitBulkReserve }}
{{- if eq $w.channel "email" }}
{{- $_ := set $env "HERALD_EMAIL_PROVIDERS" (join "," $p.emailProviders) }}
{{- with $p.emailFrom }}{{ $_ := set $env "HERALD_EMAIL_FROM" . }}{{ end }}
{{- if $p.smtp.host }}
{{- $_ := set $env "HERALD_SMTP_HOST" $p.smtp.host }}
{{- $_ := set $env "HERALD_SMTP_PORT" (int $p.smtp.port) }}
{{- $_ := set $env "HERALD_SMTP_STARTTLS" $p.smtp.starttls }}
{{- $_ := set $env "HERALD_SMTP_POOL_SIZE" (int $p.smtp.poolSize) }}
{{- with $p.smtp.username }}{{ $_ := set $env "HERALD_SMTP_USERNAME" . }}{{ end }}
{{- end }}
{{- with $p.sendgrid.baseUrl }}{{ $_ := set $env "HERALD_SENDGRID_BASE_URL" . }}{{ end }}
{{- $_ := set $env "HERALD_SMTP_RATE_PER_S" $p.smtp.ratePerSecond }}
{{- $_ := set $env "HERALD_SMTP_BURST" (int $p.smtp.burst) }}
{{- $_ := set $env "HERALD_SENDGRID_RATE_PER_S" $p.sendgrid.ratePerSecond }}
{{- $_ := set $env "HERALD_SENDGRID_BURST" (int $p.sendgrid.burst) }}
{{- $_ := set $env "HERALD_SENDGRID_BATCH_MAX" (int $p.sendgrid.batchMax) }}
{{- $_ := set $env "HERALD_SENDGRID_BATCH_LINGER_MS" $p.sendgrid.batchLingerMs }}
{{- else if eq $w.channel "sms" }}
{{- $_ := set $env "HERALD_SMS_PROVIDERS" (join "," $p.smsProviders) }}
{{- with $p.twilio.baseUrl }}{{ $_ := set $env "HERALD_TWILIO_BASE_URL" . }}{{ end }}
{{- with $p.twilio.accountSid }}{{ $_ := set $env "HERALD_TWILIO_ACCOUNT_SID" . }}{{ end }}
{{- with $p.twilio.from }}{{ $_ := set $env "HERALD_TWILIO_FROM" . }}{{ end }}
{{- with $p.twilio.statusCallbackUrl }}{{ $_ := set $env "HERALD_TWILIO_STATUS_CALLBACK_URL" . }}{{ end }}
{{- with $v.receipts.publicBaseUrl }}{{ $_ := set $env "HERALD_PUBLIC_BASE_URL" . }}{{ end }}
{{- $_ := set $env "HERALD_TWILIO_RATE_PER_S" $p.twilio.ratePerSecond }}
{{- $_ := set $env "HERALD_TWILIO_BURST" (int $p.twilio.burst) }}
{{- else if eq $w.channel "push" }}
{{- $_ := set $env "HERALD_PUSH_PROVIDERS" (join "," $p.pushProviders) }}
{{- with $p.fcm.baseUrl }}{{ $_ := set $env "HERALD_FCM_BASE_URL" . }}{{ end }}
{{- with $p.fcm.tokenUrl }}{{ $_ := set $env "HERALD_FCM_TOKEN_URL" . }}{{ end }}
{{- with $p.fcm.projectId }}{{ $_ := set $env "HERALD_FCM_PROJECT_ID" . }}{{ end }}
{{- $_ := set $env "HERALD_FCM_RATE_PER_S" $p.fcm.ratePerSecond }}
{{- $_ := set $env "HERALD_FCM_BURST" (int $p.fcm.burst) }}
{{- end }}
{{- end }}
{{- range $name := keys $env | sortAlpha }}
- name: {{ $name }}
  value: {{ get $env $name | toString | quote }}
{{- end }}
{{- end }}

{{/* The FCM credentials file is mounted only into push senders. */}}
{{- define "herald.mountsFcm" -}}
{{- if eq (index . 1).channel "push" }}true{{ end }}
{{- end }}

{{/* An HTTP probe: (list $probeSettings $path $portName). */}}
{{- define "herald.probe" -}}
{{- $p := index . 0 -}}
httpGet:
  path: {{ index . 1 }}
  port: {{ index . 2 }}
periodSeconds: {{ $p.periodSeconds }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $p.failureThreshold }}
{{- end }}
