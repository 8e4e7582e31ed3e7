# What runs inside EKS: the lakehouse namespace, service accounts bound to their IRSA roles, the
# environment (a ConfigMap with config/prod.yml's references, a Secret with the tokens), the
# KubeRay operator, the Ray resources from modules/ray_manifests (a local chart: Helm applies
# custom resources without needing their CRDs at plan time), and Prefect: a Kubernetes worker,
# plus a self-hosted server on RDS unless Prefect Cloud is chosen.
terraform {
  required_version = ">= 1.10"
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.38"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }
}

locals {
  labels = { "app.kubernetes.io/part-of" = "lakehouse" }
  # In-cluster Prefect server URL when self-hosted; Prefect Cloud's otherwise.
  prefect_api_url = var.prefect_cloud ? "https://api.prefect.cloud/api/accounts/${var.prefect_cloud_account_id}/workspaces/${var.prefect_cloud_workspace_id}" : "http://prefect-server.${var.namespace}.svc.cluster.local:4200/api"
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name = var.namespace
    labels = merge(local.labels, {
      # Ray and Prefect pods meet "restricted"; operator-injected sidecars are held to "baseline".
      "pod-security.kubernetes.io/enforce" = "baseline"
      "pod-security.kubernetes.io/warn"    = "restricted"
    })
  }
}

resource "kubernetes_service_account_v1" "irsa" {
  for_each = var.irsa_role_arns
  metadata {
    name        = each.key
    namespace   = kubernetes_namespace_v1.this.metadata[0].name
    labels      = local.labels
    annotations = { "eks.amazonaws.com/role-arn" = each.value }
  }
}

# config/prod.yml's ${VAR} references, for every pod of the platform.
resource "kubernetes_config_map_v1" "env" {
  metadata {
    name      = "lakehouse-env"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = local.labels
  }
  data = merge(var.environment, { PREFECT_API_URL = local.prefect_api_url })
}

resource "kubernetes_secret_v1" "env" {
  metadata {
    name      = "lakehouse-secrets"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = local.labels
  }
  data = var.secret_environment
}

# The Ray token, under the key KubeRay reads (authOptions.secretName); clients get it as RAY_AUTH_TOKEN.
resource "kubernetes_secret_v1" "ray_auth" {
  metadata {
    name      = var.ray_auth_secret_name
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = local.labels
  }
  data = { auth_token = var.ray_auth_token }
}

resource "helm_release" "kuberay_operator" {
  name             = "kuberay-operator"
  repository       = "https://ray-project.github.io/kuberay-helm/"
  chart            = "kuberay-operator"
  version          = var.kuberay_version
  namespace        = "kuberay-system"
  create_namespace = true
  atomic           = true
}

resource "helm_release" "ray" {
  name       = "ray-platform"
  chart      = "${path.module}/../../charts/ray-platform"
  namespace  = kubernetes_namespace_v1.this.metadata[0].name
  values     = [yamlencode({ manifests = var.ray_manifests })]
  depends_on = [helm_release.kuberay_operator, kubernetes_secret_v1.ray_auth, kubernetes_service_account_v1.irsa]
}

resource "helm_release" "prefect_server" {
  count      = var.prefect_cloud ? 0 : 1
  name       = "prefect-server"
  repository = "https://prefecthq.github.io/prefect-helm"
  chart      = "prefect-server"
  version    = var.prefect_chart_version
  namespace  = kubernetes_namespace_v1.this.metadata[0].name
  # The chart's defaults already run non-root with a read-only root filesystem.
  values = [yamlencode({
    server = {
      uiConfig = { prefectUiApiUrl = "http://localhost:4200/api" } # the UI through port-forward
      env      = [{ name = "PREFECT_SERVER_ANALYTICS_ENABLED", value = "false" }]
    }
    service    = { type = "ClusterIP" }
    postgresql = { enabled = false }
    secret     = { create = false, name = one(kubernetes_secret_v1.prefect_db[*].metadata[0].name) }
  })]
}

# Prefect server's database URL (the chart reads key connection-string).
resource "kubernetes_secret_v1" "prefect_db" {
  count = var.prefect_cloud ? 0 : 1
  metadata {
    name      = "prefect-server-db"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = local.labels
  }
  data = { connection-string = var.prefect_database_url }
}

resource "kubernetes_secret_v1" "prefect_api_key" {
  count = var.prefect_cloud ? 1 : 0
  metadata {
    name      = "prefect-api-key"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = local.labels
  }
  data = { key = var.prefect_api_key }
}

# The worker polls the `lakehouse` pool and starts each flow run as a Kubernetes job from the
# pool's base job template (modules/prefect_job_template): the lakehouse image under the spark
# service account, with the platform's environment (prefect.yaml's deployments).
resource "helm_release" "prefect_worker" {
  name       = "prefect-worker"
  repository = "https://prefecthq.github.io/prefect-helm"
  chart      = "prefect-worker"
  version    = var.prefect_chart_version
  namespace  = kubernetes_namespace_v1.this.metadata[0].name
  values = [yamlencode({
    # Both API configs are always present (null = unused): a conditional's two objects must
    # have the same attributes.
    worker = {
      apiConfig = var.prefect_cloud ? "cloud" : "server"
      # The chart's init container syncs this template to the pool on every change.
      config = {
        workPool        = var.prefect_work_pool
        type            = "kubernetes"
        baseJobTemplate = { configuration = var.prefect_base_job_template }
      }
      image              = { repository = "prefecthq/prefect", prefectTag = "3-python3.11-kubernetes" }
      extraEnvVarsCM     = kubernetes_config_map_v1.env.metadata[0].name
      extraEnvVarsSecret = kubernetes_secret_v1.env.metadata[0].name
      cloudApiConfig = var.prefect_cloud ? {
        accountId    = var.prefect_cloud_account_id
        workspaceId  = var.prefect_cloud_workspace_id
        apiKeySecret = { name = one(kubernetes_secret_v1.prefect_api_key[*].metadata[0].name), key = "key" }
      } : null
      serverApiConfig = var.prefect_cloud ? null : { apiUrl = local.prefect_api_url }
    }
    serviceAccount = { create = false, name = "prefect-worker" }
  })]
  depends_on = [helm_release.prefect_server, kubernetes_service_account_v1.irsa]
}

# Spark on Kubernetes in client mode: the driver (a flow-run pod under the spark service
# account) creates and deletes its executor pods in this namespace, and nothing else.
resource "kubernetes_role_v1" "spark_driver" {
  metadata {
    name      = "spark-driver"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = local.labels
  }
  rule {
    api_groups = [""]
    resources  = ["pods", "services", "configmaps", "persistentvolumeclaims"]
    verbs      = ["create", "get", "list", "watch", "delete", "deletecollection"]
  }
}

resource "kubernetes_role_binding_v1" "spark_driver" {
  metadata {
    name      = "spark-driver"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels    = local.labels
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.spark_driver.metadata[0].name
  }
  subject {
    kind      = "ServiceAccount"
    name      = "spark"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
}
