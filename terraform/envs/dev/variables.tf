variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "availability_zones" {
  description = "Three availability zones of the region (one Kafka broker in each)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]
}

variable "bucket_prefix" {
  description = "Globally unique prefix of the bucket names, e.g. your company name."
  type        = string
}

variable "admin_role_arns" {
  description = "IAM roles administering the EKS cluster (the role you apply with first)."
  type        = list(string)
}

variable "image" {
  description = "The lakehouse image (pushed to the ECR repository this root outputs)."
  type        = string
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to the EKS API's public endpoint; empty = private only."
  type        = list(string)
  default     = []
}

variable "prefect_cloud" {
  description = "Use Prefect Cloud instead of the self-hosted server."
  type        = bool
  default     = false
}

variable "prefect_cloud_account_id" {
  description = "Prefect Cloud account ID."
  type        = string
  default     = ""
}

variable "prefect_cloud_workspace_id" {
  description = "Prefect Cloud workspace ID."
  type        = string
  default     = ""
}
