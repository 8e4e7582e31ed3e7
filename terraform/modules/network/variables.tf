variable "name" {
  description = "Name prefix (the environment's)."
  type        = string
}

variable "cidr_block" {
  description = "VPC CIDR; private subnets take /20s from its start, public ones /28s from its end."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones to spread subnets over (MSK and EKS need at least two)."
  type        = list(string)
}

variable "az_count" {
  description = "How many of availability_zones to use."
  type        = number
  default     = 2
  validation {
    condition     = var.az_count >= 2
    error_message = "az_count must be at least 2 (EKS, MSK and RDS subnet groups need two zones)."
  }
}

variable "kms_key_arn" {
  description = "KMS key for the flow-log group."
  type        = string
}

variable "log_retention_days" {
  description = "CloudWatch retention for flow logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
