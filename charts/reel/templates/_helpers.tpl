{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "reel.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-reel, or the release name alone when it already contains "reel". */}}
{{- define "reel.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "reel.operatorName" -}}
{{- printf "%s-operator" (include "reel.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "reel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "reel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "reel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reel
{{- end -}}

{{- define "reel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "reel.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* true when the operator serves every namespace (no watchNamespaces). */}}
{{- define "reel.clusterwide" -}}
{{- if empty .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/* true when several replicas share the work through kopf peering. */}}
{{- define "reel.peering" -}}
{{- if gt (int .Values.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry the release namespace too: two releases of
the same name in different namespaces (e.g. two teams, each watching its own namespaces) must not collide. */}}
{{- define "reel.clusterScopedName" -}}
{{- printf "%s-%s" (include "reel.operatorName" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "reel.peeringName" -}}
{{- include "reel.fullname" . -}}
{{- end -}}

{{- define "reel.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* Addresses no session endpoint may be (endpointPolicy): deniedCIDRs and the API server's (reel.apiServerCIDRs).
A JSON list of CIDRs (a bare address gets /32 or /128). */}}
{{- define "reel.deniedCIDRs" -}}
{{- $all := concat .Values.endpointPolicy.deniedCIDRs (include "reel.apiServerCIDRs" . | fromJsonArray) -}}
{{- $out := list -}}
{{- range $all -}}
{{- $c := toString . -}}
{{- if not (contains "/" $c) -}}{{- $c = printf "%s/%s" $c (ternary "128" "32" (contains ":" $c)) -}}{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- $out | uniq | toJson -}}
{{- end -}}

{{/* The API server's addresses: endpointPolicy.apiServerAddresses and, with lookupApiServer, the kubernetes
Service's ClusterIPs and the API server's own addresses as the cluster reports them (lookup: empty under
`helm template`). A JSON list of CIDRs (a bare address gets /32 or /128). Denied to session endpoints
(reel.deniedCIDRs), allowed to recorder pods by their NetworkPolicy (templates/network-policy.yaml). */}}
{{- define "reel.apiServerCIDRs" -}}
{{- $p := .Values.endpointPolicy -}}
{{- $all := $p.apiServerAddresses -}}
{{- if $p.lookupApiServer -}}
{{- $svc := lookup "v1" "Service" "default" "kubernetes" -}}
{{- if $svc -}}{{- $all = concat $all ($svc.spec.clusterIPs | default list) -}}{{- end -}}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" -}}
{{- if $slice -}}{{- range $slice.endpoints -}}{{- $all = concat $all (.addresses | default list) -}}{{- end -}}{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $all -}}
{{- $c := toString . -}}
{{- if not (contains "/" $c) -}}{{- $c = printf "%s/%s" $c (ternary "128" "32" (contains ":" $c)) -}}{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- $out | uniq | toJson -}}
{{- end -}}
