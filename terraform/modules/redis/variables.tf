variable "name" {
  description = "Name prefix."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cache."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (two zones)."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "Security group of the clients (the EKS nodes and pods)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for data at rest."
  type        = string
}

variable "auth_token" {
  description = "Redis AUTH token (from the secrets module; 16 to 128 printable characters)."
  type        = string
  sensitive   = true
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "node_type" {
  description = "Cache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
