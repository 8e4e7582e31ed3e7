variable "environment" {
  description = "Environment name (dev, prod): the secrets' path."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key (MSK refuses SCRAM secrets under the default key)."
  type        = string
}

variable "prefect_cloud" {
  description = "Whether Prefect Cloud is used (then its API key gets a secret)."
  type        = bool
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
