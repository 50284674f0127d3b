{{/* Labels every object of the chart's carries, and its pods' selector. */}}
{{- define "keelson.labels" -}}
app.kubernetes.io/name: keelson
app.kubernetes.io/part-of: keelson
{{- end }}

{{/* The image: by digest when one is given, else by tag (default: appVersion). */}}
{{- define "keelson.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}
