variable "name" {
  description = "Name prefix."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database."
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
  description = "KMS key for storage and Performance Insights."
  type        = string
}

variable "master_password" {
  description = "Master password (from the secrets module)."
  type        = string
  sensitive   = true
}

variable "engine_version" {
  description = "PostgreSQL version."
  type        = string
  default     = "16.8"
}

variable "instance_class" {
  description = "Instance class."
  type        = string
  default     = "db.t4g.small"
}

variable "storage_gb" {
  description = "Initial storage (grows up to 5x on its own)."
  type        = number
  default     = 20
}

variable "multi_az" {
  description = "Standby in a second zone."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
