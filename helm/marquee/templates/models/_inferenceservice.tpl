{{- /*
One KServe InferenceService of a model version: .ctx the root context, .m one entry of
models.versions ({version, shadow, resources, ...}). The retrain trigger's template renders
it with version __MARQUEE_VERSION__ and shadow true (templates/trigger/configmap.yaml), and
.adoptable true: Helm's ownership annotations, so that adding the version to models.versions
later (for example once it is promoted) lets `helm upgrade` take the object over.
*/ -}}
{{- define "marquee.inferenceService" -}}
{{- $ := .ctx -}}
{{- $m := .m -}}
{{- /* The bundle: by default the server asks the registry for version N's bundle_uri itself
       (no STORAGE_URI, so KServe injects no storage initializer). With .m.bundleUri (the
       registry's bundle_uri tag: bundles live under their own <UTC stamp>-<hex> version, never
       under the registry number) KServe's storage initializer fetches it to /mnt/models, where
       the server verifies and loads it. */ -}}
{{- $bundleUri := $m.bundleUri | default "" -}}
{{- $loggerUrl := "" -}}
{{- if $.Values.models.logger.enabled }}{{ $loggerUrl = include "marquee.loggerUrl" $ }}{{ end -}}
{{- $version := toString $m.version }}
{{- $name := include "marquee.inferenceServiceName" (dict "ctx" $ "version" $version) }}
{{- /* KServe 0.15+ calls RawDeployment "Standard" (plain Deployments, no Knative). */}}
{{- $raw := has $.Values.models.deploymentMode (list "RawDeployment" "Standard") }}
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{ $name }}
  namespace: {{ include "marquee.namespace" $ }}
  labels:
    {{- include "marquee.labels" (dict "ctx" $ "component" "model") | nindent 4 }}
    marquee.dev/model-version: {{ $version | quote }}
  annotations:
    serving.kserve.io/deploymentMode: {{ $.Values.models.deploymentMode }}
    {{- if $raw }}
    serving.kserve.io/autoscalerClass: hpa
    {{- end }}
    {{- if .adoptable }}
    meta.helm.sh/release-name: {{ $.Release.Name }}
    meta.helm.sh/release-namespace: {{ include "marquee.namespace" $ }}
    {{- end }}
spec:
  predictor:
    annotations:
      checksum/settings: {{ include (print $.Template.BasePath "/settings/configmap.yaml") $ | sha256sum }}
      checksum/model-server: {{ include (print $.Template.BasePath "/models/configmap.yaml") $ | sha256sum }}
    labels:
      marquee.dev/tier: {{ ternary "shadow" "serving" (default false $m.shadow) }}
    serviceAccountName: {{ include "marquee.componentName" (dict "ctx" $ "component" "model") }}
    automountServiceAccountToken: false
    {{- /* hasKey, not default: a version's minReplicas 0 (scale to zero) is a value. */}}
    {{- $min := ternary $m.minReplicas $.Values.models.minReplicas (hasKey $m "minReplicas") }}
    {{- $max := default $.Values.models.maxReplicas $m.maxReplicas }}
    {{- if gt (int $min) (int $max) }}
    {{- $what := ternary "a retrained version (the retrain trigger's InferenceService)" (printf "version %v" $version) (eq $version "__MARQUEE_VERSION__") }}
    {{- fail (printf "models: %s would run minReplicas %v above maxReplicas %v (a version's own value, else models.minReplicas / models.maxReplicas)" $what $min $max) }}
    {{- end }}
    minReplicas: {{ $min }}
    maxReplicas: {{ $max }}
    timeout: {{ $.Values.models.timeoutSeconds }}
    {{- if hasKey $m "canaryTrafficPercent" }}
    {{- if $raw }}
    {{- fail (printf "models.versions: version %v sets canaryTrafficPercent, which KServe supports in Serverless mode only (models.deploymentMode is %s): set models.deploymentMode=Serverless, or let the router split traffic with a ModelRollout" $version $.Values.models.deploymentMode) }}
    {{- end }}
    canaryTrafficPercent: {{ $m.canaryTrafficPercent }}
    {{- end }}
    {{- if $loggerUrl }}
    logger:
      mode: {{ $.Values.models.logger.mode }}
      url: {{ $loggerUrl }}
    {{- end }}
    {{- with include "marquee.imagePullSecrets" $ | trim }}{{ . | nindent 4 }}{{ end }}
    {{- include "marquee.podSecurityContext" $ | nindent 4 }}
    {{- if $raw }}
    {{- /* On SIGTERM the server answers what is in flight (modelServer.gracePeriodSeconds),
           then writes the queued payload rows (up to 30 s with a slow store): more than the
           pod's default 30 s. Knative refuses the field; its revision timeout applies there. */}}
    terminationGracePeriodSeconds: {{ add (int $.Values.modelServer.gracePeriodSeconds) 40 }}
    {{- end }}
    {{- /* A shadow version also gets the shadow PriorityClass and prefers nodes without the
           serving versions' pods. */}}
    {{- $affinity := deepCopy ($.Values.affinity | default dict) }}
    {{- if and $m.shadow $.Values.models.shadowAntiAffinity }}
    {{- $anti := get $affinity "podAntiAffinity" | default dict }}
    {{- $preferred := get $anti "preferredDuringSchedulingIgnoredDuringExecution" | default list }}
    {{- $selector := dict "matchLabels" (dict "app.kubernetes.io/instance" $.Release.Name "marquee.dev/tier" "serving") }}
    {{- $term := dict "weight" 100 "podAffinityTerm" (dict "topologyKey" "kubernetes.io/hostname" "labelSelector" $selector) }}
    {{- $_ := set $anti "preferredDuringSchedulingIgnoredDuringExecution" (append $preferred $term) }}
    {{- $_ := set $affinity "podAntiAffinity" $anti }}
    {{- end }}
    {{- with include "marquee.scheduling" (dict "ctx" $ "affinity" $affinity) | trim }}{{ . | nindent 4 }}{{ end }}
    {{- $priorityClass := $m.priorityClassName | default (ternary (include "marquee.shadowPriorityClassName" $) "" (default false $m.shadow)) }}
    {{- with $priorityClass }}
    priorityClassName: {{ . }}
    {{- end }}
    containers:
      - name: kserve-container
        image: {{ include "marquee.image" (dict "ctx" $ "repository" $.Values.image.serverRepository "digest" $.Values.image.serverDigest) }}
        imagePullPolicy: {{ $.Values.image.pullPolicy }}
        args:
          - serve
          - --runtime
          - kserve
          {{- if $bundleUri }}
          - --bundle-uri
          - /mnt/models
          {{- else }}
          - --model-version
          - {{ $version | quote }}
          {{- end }}
          {{- with $.Values.models.extraArgs }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        ports:
          - name: http1
            containerPort: {{ $.Values.modelServer.port }}
            protocol: TCP
        {{- include "marquee.servingEnv" $ | nindent 8 }}
          {{- with $bundleUri }}
          - name: STORAGE_URI
            value: {{ . | quote }}
          {{- end }}
        {{- /* The HTTP server opens only once the bundle is loaded (a minute at 1M items):
               liveness alone would restart a loading server in a loop. */}}
        startupProbe:
          httpGet:
            path: /v2/health/live
            port: {{ $.Values.modelServer.port }}
          periodSeconds: 10
          failureThreshold: {{ div (add (int $.Values.models.startupTimeoutSeconds) 9) 10 }}
        readinessProbe:
          httpGet:
            path: /v2/health/ready
            port: {{ $.Values.modelServer.port }}
          periodSeconds: 10
          failureThreshold: 3
        livenessProbe:
          httpGet:
            path: /v2/health/live
            port: {{ $.Values.modelServer.port }}
          initialDelaySeconds: 30
          periodSeconds: 10
          failureThreshold: 3
        resources:
          {{- toYaml (default $.Values.models.resources $m.resources) | nindent 10 }}
        {{- include "marquee.containerSecurityContext" $ | nindent 8 }}
        volumeMounts:
          {{- include "marquee.tmpVolumeMount" $ | nindent 10 }}
    volumes:
      {{- include "marquee.tmpVolume" $ | nindent 6 }}
{{- end -}}
