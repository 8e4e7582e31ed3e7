# The base job template of the `lakehouse` Kubernetes work pool: how the Prefect worker turns a
# flow run into a Kubernetes Job. Each run is the lakehouse image under the `spark` service
# account (IRSA: the lake; RBAC: its Spark executors), with the platform's environment (the
# ConfigMap and Secret config/prod.yml's references come from) and POD_IP for the Spark driver.
# Prefect prepends its own variables (PREFECT_API_URL, the flow run id) to the fixed env list.
# No provider: it renders offline, like ray_manifests.
terraform {
  required_version = ">= 1.10"
}

locals {
  base_job_template = {
    job_configuration = {
      command   = "{{ command }}"
      env       = "{{ env }}"
      labels    = "{{ labels }}"
      name      = "{{ name }}"
      namespace = "{{ namespace }}"
      job_manifest = {
        apiVersion = "batch/v1"
        kind       = "Job"
        metadata = {
          generateName = "{{ name }}-"
          labels       = "{{ labels }}"
          namespace    = "{{ namespace }}"
        }
        spec = {
          backoffLimit            = 0 # Prefect retries tasks itself; a failed pod is a failed run
          ttlSecondsAfterFinished = "{{ finished_job_ttl }}"
          template = {
            spec = {
              restartPolicy      = "Never"
              completions        = 1 # Prefect's manifest validation requires these two here
              parallelism        = 1
              serviceAccountName = var.service_account
              securityContext    = { runAsNonRoot = true, runAsUser = 1000, seccompProfile = { type = "RuntimeDefault" } }
              containers = [{
                name            = "prefect-job"
                image           = "{{ image }}"
                args            = "{{ command }}"
                imagePullPolicy = "IfNotPresent"
                envFrom = concat(
                  [for name in var.config_maps : { configMapRef = { name = name } }],
                  [for name in var.env_secrets : { secretRef = { name = name } }],
                )
                env = [{ name = "POD_IP", valueFrom = { fieldRef = { fieldPath = "status.podIP" } } }]
                securityContext = {
                  allowPrivilegeEscalation = false
                  capabilities             = { drop = ["ALL"] }
                }
                resources = {
                  requests = { cpu = var.cpu, memory = var.memory }
                  limits   = { cpu = var.cpu, memory = var.memory }
                }
              }]
            }
          }
        }
      }
      job_watch_timeout_seconds = "{{ job_watch_timeout_seconds }}"
      pod_watch_timeout_seconds = "{{ pod_watch_timeout_seconds }}"
      stream_output             = "{{ stream_output }}"
    }
    variables = {
      type = "object"
      properties = {
        name      = { type = "string", title = "Name", description = "Name given to created jobs." }
        env       = { type = "object", title = "Environment Variables", additionalProperties = { type = "string" } }
        labels    = { type = "object", title = "Labels", additionalProperties = { type = "string" } }
        command   = { type = "string", title = "Command", description = "The command that starts the flow run." }
        namespace = { type = "string", title = "Namespace", default = var.namespace }
        image     = { type = "string", title = "Image", default = var.image }
        finished_job_ttl = {
          type        = "integer", title = "Finished Job TTL", default = 86400,
          description = "Seconds a finished job (and its logs) is kept."
        }
        job_watch_timeout_seconds = { type = "integer", title = "Job Watch Timeout Seconds" }
        pod_watch_timeout_seconds = { type = "integer", title = "Pod Watch Timeout Seconds", default = 300 }
        stream_output             = { type = "boolean", title = "Stream Output", default = true }
      }
    }
  }
}
