variable "namespace" {
  description = "Namespace of the platform's workloads."
  type        = string
  default     = "lakehouse"
}

variable "irsa_role_arns" {
  description = "Service account name => IAM role ARN (spark, ray, prefect-worker)."
  type        = map(string)
}

variable "environment" {
  description = "Non-secret environment for every pod: config/prod.yml's $${VAR} references (see docs/deploy.md)."
  type        = map(string)
}

variable "secret_environment" {
  description = "Secret environment for every pod (Kafka SCRAM password, Redis AUTH token, Ray and Serve tokens)."
  type        = map(string)
  sensitive   = true
}

variable "ray_auth_secret_name" {
  description = "Name of the Kubernetes secret with the Ray token (ray_manifests' auth_secret_name)."
  type        = string
  default     = "ray-auth-token"
}

variable "ray_auth_token" {
  description = "The Ray token (from Secrets Manager)."
  type        = string
  sensitive   = true
}

variable "ray_manifests" {
  description = "RayCluster and RayService objects from modules/ray_manifests."
  type        = any
}

variable "kuberay_version" {
  description = "KubeRay operator chart version (token auth with secretName needs 1.6 or newer)."
  type        = string
  default     = "1.6.2"
}

variable "prefect_chart_version" {
  description = "prefect-helm chart version (prefect-server and prefect-worker); null = the newest, pin it after the first install (docs/deploy.md)."
  type        = string
  default     = null
}

variable "prefect_work_pool" {
  description = "Work pool the worker serves (prefect.yaml's work_pool)."
  type        = string
  default     = "lakehouse"
}

variable "prefect_base_job_template" {
  description = "The work pool's base job template, as JSON (modules/prefect_job_template)."
  type        = string
}

variable "prefect_cloud" {
  description = "Use Prefect Cloud instead of a self-hosted Prefect server on RDS."
  type        = bool
  default     = false
}

variable "prefect_cloud_account_id" {
  description = "Prefect Cloud account ID (prefect_cloud = true)."
  type        = string
  default     = ""
}

variable "prefect_cloud_workspace_id" {
  description = "Prefect Cloud workspace ID (prefect_cloud = true)."
  type        = string
  default     = ""
}

variable "prefect_api_key" {
  description = "Prefect Cloud API key (prefect_cloud = true), read from Secrets Manager by the root module."
  type        = string
  default     = ""
  sensitive   = true
}

variable "prefect_database_url" {
  description = "postgresql+asyncpg:// URL of the Prefect database (self-hosted server)."
  type        = string
  default     = ""
  sensitive   = true
}
