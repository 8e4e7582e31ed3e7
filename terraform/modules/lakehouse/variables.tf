variable "environment" {
  description = "Environment name: dev or prod."
  type        = string
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "bucket_prefix" {
  description = "Globally unique prefix of the bucket names (<prefix>-<environment>-lake)."
  type        = string
}

variable "availability_zones" {
  description = "Availability zones of the region."
  type        = list(string)
}

variable "az_count" {
  description = "Zones used: 3 gives the three Kafka brokers config/prod.yml's replication_factor 3 needs."
  type        = number
  default     = 3
}

variable "vpc_cidr" {
  description = "VPC CIDR."
  type        = string
  default     = "10.40.0.0/16"
}

variable "admin_role_arns" {
  description = "IAM roles that administer the EKS cluster (the deployer's role first)."
  type        = list(string)
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to the EKS API's public endpoint; empty = private only."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "EKS node instance types."
  type        = list(string)
  default     = ["m7i.xlarge"]
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT."
  type        = string
  default     = "ON_DEMAND"
}

variable "node_min" {
  description = "Minimum (and initial) EKS nodes."
  type        = number
  default     = 2
}

variable "node_max" {
  description = "Maximum EKS nodes."
  type        = number
  default     = 6
}

variable "kafka_broker_count" {
  description = "MSK brokers (a multiple of the zones used; at least config/prod.yml's kafka.replication_factor)."
  type        = number
  default     = 3
}

variable "kafka_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.t3.small"
}

variable "redis_node_type" {
  description = "ElastiCache node type (two nodes)."
  type        = string
  default     = "cache.t4g.small"
}

variable "postgres_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.small"
}

variable "postgres_multi_az" {
  description = "RDS standby in a second zone."
  type        = bool
  default     = true
}

variable "landing_retention_days" {
  description = "Days landing files are kept (moved to STANDARD_IA after 30)."
  type        = number
  default     = 365
}

variable "image" {
  description = "The lakehouse image (Ray + the repo, terraform/image/Dockerfile), usually in this environment's ECR repository."
  type        = string
}

variable "ray_head" {
  description = "Ray head pod size."
  type        = object({ cpu = string, memory = string })
  default     = { cpu = "2", memory = "8Gi" }
}

variable "ray_worker" {
  description = "Ray worker pod size and autoscaling bounds."
  type        = object({ cpu = string, memory = string, min = number, max = number })
  default     = { cpu = "3", memory = "12Gi", min = 1, max = 4 }
}

variable "prefect_cloud" {
  description = "Use Prefect Cloud (true) or a self-hosted Prefect server on RDS (false)."
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

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
