# The KubeRay custom resources, computed from the repo's own config and nothing else: no
# provider, no resource, so `terraform init/validate/apply` work on this module offline (CI
# renders it; see terraform/checks.py). The RayService's serveConfigV2 is serve/config.yaml,
# read at plan time, never a copy (only the proxy's listen address is the pod's). Both clusters use Ray token auth and ClusterIP
# services only: the dashboard (8265) and client (10001) ports are reached by port-forward or
# from inside the cluster, never through a load balancer.
terraform {
  required_version = ">= 1.10"
}

locals {
  serve_config_file = coalesce(var.serve_config_file, "${path.module}/../../../serve/config.yaml")
  serve_config      = yamldecode(file(local.serve_config_file))
  # serve/config.yaml as it is, but for one key: inside a pod the Serve proxy listens on the
  # pod's address (the file's 127.0.0.1 is right on a laptop), or the RayService's ClusterIP
  # serve service could not reach it. Nothing outside the cluster can: there is no load balancer.
  serve_config_v2 = yamlencode(merge(local.serve_config, {
    http_options = merge(try(local.serve_config.http_options, {}), { host = "0.0.0.0" })
  }))

  labels = { "app.kubernetes.io/part-of" = "lakehouse" }

  # Every Ray container: non-root, no privilege escalation, no capabilities.
  security_context = {
    runAsNonRoot             = true
    runAsUser                = 1000
    allowPrivilegeEscalation = false
    capabilities             = { drop = ["ALL"] }
    seccompProfile           = { type = "RuntimeDefault" }
  }

  env_from = concat(
    [for name in var.config_maps : { configMapRef = { name = name } }],
    [for name in var.env_secrets : { secretRef = { name = name } }],
  )

  auth_options = {
    mode       = "token"
    secretName = var.auth_secret_name
  }

  pod = {
    for role, size in { head = var.head, worker = var.worker } : role => {
      metadata               = { labels = local.labels }
      spec = {
        serviceAccountName           = var.service_account
        automountServiceAccountToken = true # IRSA's web identity token
        containers = [{
          name            = "ray-${role}"
          image           = var.image
          imagePullPolicy = "IfNotPresent"
          envFrom         = local.env_from
          env = [
            { name = "LAKEHOUSE_ENV", value = "prod" },
            # config/prod.yml's spark.driver.host: a Spark driver in this pod is reached here.
            { name = "POD_IP", valueFrom = { fieldRef = { fieldPath = "status.podIP" } } },
          ]
          securityContext = local.security_context
          resources = {
            requests = { cpu = size.cpu, memory = size.memory }
            limits   = { cpu = size.cpu, memory = size.memory }
          }
        }]
      }
    }
  }

  # Head: no Ray tasks on it (num-cpus 0) so the GCS, dashboard and autoscaler keep their room.
  cluster_spec = {
    rayVersion              = var.ray_version
    enableInTreeAutoscaling = true
    authOptions             = local.auth_options
    headGroupSpec = {
      serviceType    = "ClusterIP"
      rayStartParams = { num-cpus = "0" }
      template       = local.pod.head
    }
    workerGroupSpecs = [{
      groupName      = "workers"
      replicas       = var.worker.min
      minReplicas    = var.worker.min
      maxReplicas    = var.worker.max
      rayStartParams = {}
      template       = local.pod.worker
    }]
  }

  ray_cluster = {
    apiVersion = "ray.io/v1"
    kind       = "RayCluster"
    metadata   = { name = "${var.name}-jobs", namespace = var.namespace, labels = local.labels }
    spec       = local.cluster_spec
  }

  ray_service = {
    apiVersion = "ray.io/v1"
    kind       = "RayService"
    metadata   = { name = "${var.name}-serve", namespace = var.namespace, labels = local.labels }
    spec = {
      serveConfigV2    = local.serve_config_v2
      rayClusterConfig = local.cluster_spec
    }
  }
}
