variable "name" {
  description = "Cluster name."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the brokers."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one broker per subnet (broker_count must be a multiple of their number)."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "Security group of the clients (the EKS nodes and pods)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for data at rest and the broker log group."
  type        = string
}

variable "scram_secret_arn" {
  description = "Secrets Manager secret (AmazonMSK_ prefix, customer KMS key) with the SCRAM username and password."
  type        = string
}

variable "kafka_version" {
  description = "Kafka version of the brokers."
  type        = string
  default     = "3.9.x"
}

variable "broker_count" {
  description = "Number of brokers (topics are created with replication factor 3: three or more)."
  type        = number
  default     = 3
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "kafka.t3.small"
}

variable "volume_gb" {
  description = "EBS storage per broker."
  type        = number
  default     = 50
}

variable "retention_hours" {
  description = "Topic retention: long enough to replay a missed day of streaming ingestion."
  type        = number
  default     = 168
}

variable "log_retention_days" {
  description = "CloudWatch retention for broker logs."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
