variable "namespace" {
  description = "Namespace of the flow-run jobs."
  type        = string
  default     = "lakehouse"
}

variable "image" {
  description = "The lakehouse image flow runs (and their Spark executors) use."
  type        = string
}

variable "service_account" {
  description = "Service account of flow runs (IRSA on the lake; allowed to start Spark executors)."
  type        = string
  default     = "spark"
}

variable "config_maps" {
  description = "ConfigMaps exported as environment variables into each flow run."
  type        = list(string)
  default     = ["lakehouse-env"]
}

variable "env_secrets" {
  description = "Secrets exported as environment variables into each flow run."
  type        = list(string)
  default     = ["lakehouse-secrets"]
}

variable "cpu" {
  description = "CPU of a flow-run pod (the Spark driver runs in it)."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory of a flow-run pod: spark.driver_memory (4g in config/prod.yml) plus overhead."
  type        = string
  default     = "6Gi"
}
