variable "name" {
  description = "Cluster name."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.33"
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "vpc_cidr" {
  description = "VPC CIDR, allowed to reach the private API endpoint."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the control plane ENIs and the nodes."
  type        = list(string)
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach a public API endpoint; empty = private endpoint only (reach it through a VPN or bastion)."
  type        = list(string)
  default     = []
  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "public_access_cidrs must not contain 0.0.0.0/0."
  }
}

variable "kms_key_arn" {
  description = "KMS key for Kubernetes secrets and control-plane logs."
  type        = string
}

variable "admin_role_arns" {
  description = "IAM roles given cluster-admin through EKS access entries (the deployer, the operators)."
  type        = list(string)
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["m7i.xlarge"]
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT."
  type        = string
  default     = "ON_DEMAND"
}

variable "node_min" {
  description = "Minimum nodes."
  type        = number
  default     = 2
}

variable "node_desired" {
  description = "Initial nodes."
  type        = number
  default     = 2
}

variable "node_max" {
  description = "Maximum nodes."
  type        = number
  default     = 6
}

variable "node_disk_gb" {
  description = "Root volume size of a node (images, Spark shuffle, Ray spill)."
  type        = number
  default     = 100
}

variable "log_retention_days" {
  description = "CloudWatch retention for control-plane logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
