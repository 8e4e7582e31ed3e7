# Applied once per AWS account, with local state, before any environment: the bucket that holds
# every environment's Terraform state (KMS, no public access, TLS-only, versioned; locking is
# S3-native, `use_lockfile`, so no DynamoDB lock table).
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "lakehouse", managed-by = "terraform", purpose = "terraform-state" }
  }
}

module "kms" {
  source      = "../modules/kms_key"
  name        = "lakehouse-terraform-state"
  description = "lakehouse: Terraform state"
}

module "state_bucket" {
  #checkov:skip=CKV_AWS_18:state access is audited by CloudTrail management and data events, not S3 server access logs
  source      = "../modules/secure_bucket"
  name        = "${var.bucket_prefix}-terraform-state"
  kms_key_arn = module.kms.arn
}

variable "region" {
  description = "AWS region of the state bucket."
  type        = string
  default     = "us-east-1"
}

variable "bucket_prefix" {
  description = "Globally unique prefix of the bucket names (the same as the environments')."
  type        = string
}

output "state_bucket" {
  description = "Pass as -backend-config=bucket=... to each environment's terraform init."
  value       = module.state_bucket.name
}

output "state_kms_key_arn" {
  description = "Pass as -backend-config=kms_key_id=... to each environment's terraform init."
  value       = module.kms.arn
}
