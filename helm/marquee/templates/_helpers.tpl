{{/*
Names. Every object name is cut to 63 characters (DNS label), with any trailing "-" removed.
*/}}
{{- define "marquee.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "marquee.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: "<fullname>-<component>", cut to 63 characters.
     The fullname is cut first so that the component suffix always survives. */}}
{{- define "marquee.componentName" -}}
{{- $ctx := .ctx -}}
{{- $suffix := printf "-%s" .component -}}
{{- $max := sub (.max | default 63) (len $suffix) | int -}}
{{- printf "%s%s" (include "marquee.fullname" $ctx | trunc $max | trimSuffix "-") $suffix -}}
{{- end -}}

{{/* Name of the InferenceService of one model version: "<prefix>-v<version>", the prefix being
     the fullname cut to 40 characters, so that KServe's derived names (<name>-predictor…) stay
     within DNS limits and the router's upstream URL template can name any version. */}}
{{- define "marquee.isvcPrefix" -}}
{{- include "marquee.fullname" . | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "marquee.inferenceServiceName" -}}
{{- printf "%s-v%s" (include "marquee.isvcPrefix" .ctx) (toString .version) -}}
{{- end -}}

{{- define "marquee.namespace" -}}
{{- .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "marquee.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels. Call with (dict "ctx" $ "component" "router"), and "extra" for an object's own labels
(serviceMonitor.labels …), which win over commonLabels. Each key is written once: a key given
twice in one mapping is refused by kubectl and kustomize, and which value wins is unspecified.
commonLabels and extra may replace the chart's descriptive labels (app.kubernetes.io/part-of
…) but not the selector labels, by which Deployments and Services find their pods.
*/}}
{{- define "marquee.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marquee.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "marquee.labels" -}}
{{- $own := merge (deepCopy (.extra | default dict)) (.ctx.Values.commonLabels | default dict) -}}
{{- range $key := list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" }}
{{- if hasKey $own $key }}
{{- fail (printf "%s is a selector label the chart sets on every object (Deployments and Services find their pods by it): remove it from commonLabels and the *.labels values" $key) }}
{{- end }}
{{- end }}
{{- $lines := list (include "marquee.selectorLabels" .) -}}
{{- if not (hasKey $own "helm.sh/chart") -}}
{{- $lines = prepend $lines (printf "helm.sh/chart: %s" (include "marquee.chart" .ctx)) -}}
{{- end -}}
{{- if not (hasKey $own "app.kubernetes.io/version") -}}
{{- $lines = append $lines (printf "app.kubernetes.io/version: %s" (.ctx.Chart.AppVersion | quote)) -}}
{{- end -}}
{{- if not (hasKey $own "app.kubernetes.io/part-of") -}}
{{- $lines = append $lines "app.kubernetes.io/part-of: marquee" -}}
{{- end -}}
{{- if not (hasKey $own "app.kubernetes.io/managed-by") -}}
{{- $lines = append $lines (printf "app.kubernetes.io/managed-by: %s" .ctx.Release.Service) -}}
{{- end -}}
{{- with $own -}}
{{- $lines = append $lines (toYaml . | trimSuffix "\n") -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/* Selects every pod of this release (for NetworkPolicy peers). */}}
{{- define "marquee.releasePodSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ include "marquee.name" . }}
  app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
Images. Call with (dict "ctx" $ "repository" .Values.image.routerRepository "digest"
.Values.image.routerDigest): each image has its own digest (the four Dockerfile targets are
four images), which replaces the tag when set.
*/}}
{{- define "marquee.image" -}}
{{- $img := .ctx.Values.image -}}
{{- $tag := default .ctx.Chart.AppVersion $img.tag | toString -}}
{{- if .digest -}}
{{- printf "%s/%s@%s" $img.registry .repository .digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $img.registry .repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "marquee.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Security contexts: the same secure defaults on every pod and container.
*/}}
{{- define "marquee.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "marquee.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* Writable scratch space for a read-only root filesystem. */}}
{{- define "marquee.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "marquee.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Pod scheduling: the chart-wide nodeSelector, tolerations and affinity. Called with the
     root context, or with (dict "ctx" $ "affinity" A) to give one workload its own affinity. */}}
{{- define "marquee.scheduling" -}}
{{- $ctx := .ctx | default . -}}
{{- $affinity := ternary .affinity $ctx.Values.affinity (hasKey . "affinity") -}}
{{- with $ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* PriorityClass of shadow versions: the value, else "<fullname>-<namespace>-shadow" when
     the chart creates it (PriorityClasses are cluster-scoped: the namespace keeps two releases
     of one name in two namespaces from claiming the same object), else empty (no class). */}}
{{- define "marquee.shadowPriorityClassName" -}}
{{- $pc := .Values.models.shadowPriorityClass -}}
{{- if $pc.name -}}
{{- $pc.name -}}
{{- else if $pc.enabled -}}
{{- printf "%s-%s" (include "marquee.fullname" .) (include "marquee.namespace" .) | trunc 56 | trimSuffix "-" -}}-shadow
{{- end -}}
{{- end -}}

{{/*
Settings. The URI of the model registry: the value, else the in-chart MLflow Service.
*/}}
{{- define "marquee.registryUri" -}}
{{- if .Values.settings.registryUri -}}
{{- .Values.settings.registryUri -}}
{{- else if .Values.mlflow.enabled -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" (include "marquee.componentName" (dict "ctx" . "component" "mlflow")) (include "marquee.namespace" .) (.Values.mlflow.service.port | int) -}}
{{- else -}}
{{- required "settings.registryUri is required when mlflow.enabled is false: the MLflow tracking/registry URI, e.g. http://mlflow.mlflow.svc.cluster.local:5000" .Values.settings.registryUri -}}
{{- end -}}
{{- end -}}

{{- define "marquee.storeUri" -}}
{{- required "settings.storeUri is required: the S3 bucket/prefix holding datasets and model bundles, e.g. s3://my-bucket/marquee" .Values.settings.storeUri | trimSuffix "/" -}}
{{- end -}}

{{- define "marquee.pipelineImage" -}}
{{- default (include "marquee.image" (dict "ctx" . "repository" .Values.image.pipelineRepository "digest" .Values.image.pipelineDigest)) .Values.settings.pipelineImage -}}
{{- end -}}

{{/* A value as the string of an environment variable. Helm reads the numbers of a values file
     as floats, and toString prints a whole one from a million up in exponent form ("1e+06"),
     which the int fields of the settings classes refuse at start (router.requestStateMax,
     modelServer.maxBodyBytes …): whole numbers are printed as integers. */}}
{{- define "marquee.envString" -}}
{{- if and (kindIs "float64" .) (lt . 1e18) (gt . -1e18) -}}
{{- if eq . (floor .) -}}
{{- . | int64 | toString -}}
{{- else -}}
{{- . | toString -}}
{{- end -}}
{{- else -}}
{{- . | toString -}}
{{- end -}}
{{- end -}}

{{/* MARQUEE_ROUTER_ADMIN_TOKEN from router.adminAuth.existingSecret (nothing when it is empty):
     the router requires it on /admin/*, and the callers of that API (the rollout controller, the
     retrain trigger's local rollouts) send it. Never a plain value. */}}
{{- define "marquee.routerAdminTokenEnv" -}}
{{- with .Values.router.adminAuth.existingSecret }}
- name: MARQUEE_ROUTER_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.router.adminAuth.tokenKey }}
{{- end }}
{{- end -}}

{{/* Environment of every Marquee container: the settings ConfigMap (plus the model-server
     ConfigMap and the payload sink's token, when set, when serving is true), S3 credentials
     from an existing Secret, the pod's namespace, and extraEnv.
     Call with (dict "ctx" $ "serving" true|false). */}}
{{- define "marquee.envWith" -}}
{{- $ctx := .ctx -}}
envFrom:
  - configMapRef:
      name: {{ include "marquee.componentName" (dict "ctx" $ctx "component" "settings") }}
  {{- if .serving }}
  - configMapRef:
      name: {{ include "marquee.componentName" (dict "ctx" $ctx "component" "model-server") }}
  {{- end }}
env:
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef:
        name: {{ required "s3.existingSecret is required: a Secret holding the S3 access key id and secret access key" $ctx.Values.s3.existingSecret }}
        key: {{ $ctx.Values.s3.accessKeyIdKey }}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $ctx.Values.s3.existingSecret }}
        key: {{ $ctx.Values.s3.secretAccessKeyKey }}
  {{- if and .serving $ctx.Values.sink.auth.existingSecret }}
  {{- /* serving.settings.ServingSettings.payload_sink_token: never a plain value. */}}
  - name: MARQUEE_SERVING_PAYLOAD_SINK_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ $ctx.Values.sink.auth.existingSecret }}
        key: {{ $ctx.Values.sink.auth.tokenKey }}
  {{- end }}
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
{{- with $ctx.Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "marquee.env" -}}
{{- include "marquee.envWith" (dict "ctx" . "serving" false) -}}
{{- end -}}

{{- define "marquee.servingEnv" -}}
{{- include "marquee.envWith" (dict "ctx" . "serving" true) -}}
{{- end -}}

{{/* HTTP probes of a Marquee service. Call with (dict "ctx" $ "port" "http"). */}}
{{- define "marquee.probes" -}}
livenessProbe:
  httpGet:
    path: {{ .ctx.Values.probes.livenessPath }}
    port: {{ .port }}
  initialDelaySeconds: {{ .ctx.Values.probes.initialDelaySeconds }}
  periodSeconds: {{ .ctx.Values.probes.periodSeconds }}
  timeoutSeconds: {{ .ctx.Values.probes.timeoutSeconds }}
  failureThreshold: {{ .ctx.Values.probes.failureThreshold }}
readinessProbe:
  httpGet:
    path: {{ .ctx.Values.probes.readinessPath }}
    port: {{ .port }}
  periodSeconds: {{ .ctx.Values.probes.periodSeconds }}
  timeoutSeconds: {{ .ctx.Values.probes.timeoutSeconds }}
  failureThreshold: {{ .ctx.Values.probes.failureThreshold }}
{{- end -}}

{{/* Fails when KServe's logger is on but has nowhere to post: no models.logger.url and no sink
     of this chart (sink.enabled is off by default). Without this the logger would silently
     disappear from every InferenceService. Called once per render, at the top of
     models/inferenceservices.yaml (rendered whether or not there are versions), so every
     caller of marquee.loggerUrl may rely on it. */}}
{{- define "marquee.checkLogger" -}}
{{- if and .Values.models.logger.enabled (not .Values.models.logger.url) (not .Values.sink.enabled) -}}
{{- fail "models.logger.enabled is true but models.logger.url is empty and sink.enabled is false: KServe's logger would have nowhere to post payload logs. Set sink.enabled=true (this chart's payload-log sink; consider sink.auth.existingSecret), set models.logger.url to your own sink, or set models.logger.enabled=false (Marquee's model server writes its own payload log)." -}}
{{- end -}}
{{- end -}}

{{/* URL of the payload-log sink (models.logger.enabled only). models.logger.url is used as
     given; the chart's own sink URL carries the sink's token (sink.auth.existingSecret) as
     ?token=, since KServe's logger sends no custom headers. Neither cannot happen: the render
     has failed in marquee.checkLogger. */}}
{{- define "marquee.loggerUrl" -}}
{{- if .Values.models.logger.url -}}
{{- .Values.models.logger.url -}}
{{- else if .Values.sink.enabled -}}
{{- printf "http://%s.%s.svc.cluster.local:%d%s" (include "marquee.componentName" (dict "ctx" . "component" "sink")) (include "marquee.namespace" .) (.Values.sink.service.port | int) .Values.sink.loggerPath -}}
{{- with .Values.sink.auth.existingSecret -}}
{{- printf "?token=%s" (include "marquee.sinkToken" $ | urlquery) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The payload sink's token, read from sink.auth.existingSecret with lookup (install and
     upgrade against a cluster). Offline renders (helm template, client-side dry runs) cannot
     read it: fail rather than render a logger whose every event the sink refuses. */}}
{{- define "marquee.sinkToken" -}}
{{- $auth := .Values.sink.auth -}}
{{- $secret := lookup "v1" "Secret" (include "marquee.namespace" .) $auth.existingSecret -}}
{{- $data := (get (default dict $secret) "data") | default dict -}}
{{- $token := (get $data $auth.tokenKey) | default "" | b64dec | trim -}}
{{- if not $token -}}
{{- fail (printf "sink.auth.existingSecret: Secret %q (key %q) could not be read while rendering, and the InferenceServices' logger URL must carry the payload sink's token (KServe's logger sends no custom headers). Create the Secret before installing (lookup needs a cluster: helm template and client-side dry runs cannot read it), or set models.logger.url to the sink URL with ?token=<token>." $auth.existingSecret $auth.tokenKey) -}}
{{- end -}}
{{- $token -}}
{{- end -}}

{{- /* "true" when the retrain trigger creates InferenceServices and ModelRollouts itself
       (automatic shadow rollout, Kubernetes target), else empty. */ -}}
{{- define "marquee.triggerCreatesRollouts" -}}
{{- if and (eq .Values.retrainTrigger.autoRollout "shadow") (eq .Values.retrainTrigger.rolloutTarget "kubernetes") -}}
true
{{- end -}}
{{- end -}}

{{- /* "true" when model servers of this release can run, else empty: the InferenceServices of
       models.versions (models.enabled), or those the retrain trigger creates for retrained
       versions from its template (trigger/configmap.yaml). Either needs the model-server
       ConfigMap and ServiceAccount their pods name. */ -}}
{{- define "marquee.modelServersRun" -}}
{{- if or .Values.models.enabled (and .Values.retrainTrigger.enabled (include "marquee.triggerCreatesRollouts" .)) -}}
true
{{- end -}}
{{- end -}}

{{- /* "true" when more than one router replica can run (an HPA, or replicaCount > 1), else
       empty. Each replica keeps the request state /feedback needs in its own memory. */ -}}
{{- define "marquee.routerSeveralReplicas" -}}
{{- if or .Values.router.autoscaling.enabled (gt (int .Values.router.replicaCount) 1) -}}
true
{{- end -}}
{{- end -}}
