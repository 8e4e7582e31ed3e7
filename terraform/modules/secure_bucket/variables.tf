variable "name" {
  description = "Globally unique bucket name."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for SSE-KMS; null = SSE-S3, only for the access-log bucket (S3 cannot deliver logs to SSE-KMS)."
  type        = string
}

variable "access_logs_from" {
  description = "ARNs of buckets whose S3 server access logs this bucket receives."
  type        = list(string)
  default     = []
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept (at most 7: the lake's recovery window)."
  type        = number
  default     = 7
  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 7
    error_message = "noncurrent_version_expiration_days must be between 1 and 7."
  }
}

variable "prefix_rules" {
  description = "Old-data lifecycle per key prefix: move to STANDARD_IA, then expire."
  type = map(object({
    infrequent_access_after_days = number
    expire_after_days            = number
  }))
  default = {}
}

variable "access_log_bucket" {
  description = "Bucket receiving S3 server access logs; null = no access logs (only for the log bucket itself)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
