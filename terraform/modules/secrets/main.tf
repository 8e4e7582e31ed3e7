# Every secret the platform uses, generated here and kept in Secrets Manager (encrypted with the
# platform key): the Ray auth token, the Serve bearer token, the Redis AUTH token, the Postgres
# password, the MSK SCRAM credentials (AmazonMSK_ prefix, as MSK requires) and, when Prefect
# Cloud is used, a placeholder for its API key that an operator fills in. Values are in the
# Terraform state too, which is why the state bucket is KMS-encrypted and access-controlled.
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }
}

locals {
  generated = toset(["ray-auth-token", "serve-auth-token", "redis-auth-token", "postgres-password", "kafka-scram-password"])
}

resource "random_password" "this" {
  for_each = local.generated
  length   = 40
  special  = false # every consumer (Redis AUTH, SCRAM, URLs) accepts alphanumerics as they are
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:rotation needs a rotation Lambda per consumer; rotate by re-applying with a tainted random_password (docs/deploy.md)
  for_each                = local.generated
  name                    = "lakehouse/${var.environment}/${each.key}"
  description             = "lakehouse ${var.environment}: ${each.key}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each      = local.generated
  secret_id     = aws_secretsmanager_secret.this[each.key].id
  secret_string = random_password.this[each.key].result
}

# MSK reads SCRAM users from secrets named AmazonMSK_* holding {"username", "password"}.
resource "aws_secretsmanager_secret" "msk_scram" {
  #checkov:skip=CKV2_AWS_57:MSK SCRAM users are rotated by writing a new secret version; no rotation Lambda exists for them
  name                    = "AmazonMSK_lakehouse_${var.environment}"
  description             = "lakehouse ${var.environment}: Kafka SASL/SCRAM user"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "msk_scram" {
  secret_id = aws_secretsmanager_secret.msk_scram.id
  secret_string = jsonencode({
    username = "lakehouse"
    password = random_password.this["kafka-scram-password"].result
  })
}

# Prefect Cloud's API key is issued by Prefect, not generated: an operator puts it in this secret.
resource "aws_secretsmanager_secret" "prefect_api_key" {
  #checkov:skip=CKV2_AWS_57:Prefect Cloud API keys are issued and rotated in Prefect Cloud, then written here
  count                   = var.prefect_cloud ? 1 : 0
  name                    = "lakehouse/${var.environment}/prefect-api-key"
  description             = "lakehouse ${var.environment}: Prefect Cloud API key (set by an operator)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}
