variable "name" {
  description = "Name prefix of the RayCluster (<name>-jobs) and RayService (<name>-serve)."
  type        = string
  default     = "lakehouse"
}

variable "namespace" {
  description = "Namespace of the Ray resources."
  type        = string
  default     = "lakehouse"
}

variable "image" {
  description = "Image with Ray and the lakehouse code (terraform/image/Dockerfile)."
  type        = string
  default     = "rayproject/ray:2.60.0-py311"
}

variable "ray_version" {
  description = "Ray version inside the image (token auth needs 2.52 or newer)."
  type        = string
  default     = "2.60.0"
}

variable "serve_config_file" {
  description = "The Ray Serve config; null = the repo's serve/config.yaml."
  type        = string
  default     = null
}

variable "service_account" {
  description = "Service account of the Ray pods (IRSA: lake bucket, Delta commit table, secrets)."
  type        = string
  default     = "ray"
}

variable "auth_secret_name" {
  description = "Kubernetes secret holding the Ray token under the key auth_token (shared with Ray clients)."
  type        = string
  default     = "ray-auth-token"
}

variable "config_maps" {
  description = "ConfigMaps exported as environment variables into every Ray container (config/prod.yml's references)."
  type        = list(string)
  default     = ["lakehouse-env"]
}

variable "env_secrets" {
  description = "Secrets exported as environment variables into every Ray container."
  type        = list(string)
  default     = ["lakehouse-secrets"]
}

variable "head" {
  description = "Head pod size."
  type        = object({ cpu = string, memory = string })
  default     = { cpu = "2", memory = "8Gi" }
}

variable "worker" {
  description = "Worker pod size and autoscaling bounds."
  type        = object({ cpu = string, memory = string, min = number, max = number })
  default     = { cpu = "4", memory = "16Gi", min = 1, max = 4 }
}
