# One environment of the platform: the AWS resources, then what runs inside EKS. The
# environment roots (envs/dev, envs/prod) only choose sizes; everything else is here once.
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
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.38"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }
}

data "aws_region" "current" {}

locals {
  name = "lakehouse-${var.environment}"
  tags = merge(var.tags, { project = "lakehouse", environment = var.environment })

  namespace   = "lakehouse"
  lake_prefix = "lake"
  # config/prod.yml's lake.root: Spark reads and writes it through s3a.
  lake_root_uri = "s3a://${module.lake_bucket.name}/${local.lake_prefix}"
  spark_master  = "k8s://https://kubernetes.default.svc:443"
}

module "kms" {
  source      = "../kms_key"
  name        = local.name
  description = "lakehouse ${var.environment}: lake data, Delta commit table, secrets, logs, databases, Kafka"
  tags        = local.tags
}

# S3 server access logs of the lake bucket (SSE-S3: S3 cannot deliver access logs to SSE-KMS).
module "access_log_bucket" {
  #checkov:skip=CKV_AWS_145:S3 server access logs can only be delivered to an SSE-S3 bucket
  #checkov:skip=CKV_AWS_18:the access-log bucket does not log its own access (it would log forever)
  source           = "../secure_bucket"
  name             = "${var.bucket_prefix}-${var.environment}-access-logs"
  kms_key_arn      = null
  access_logs_from = ["arn:aws:s3:::${var.bucket_prefix}-${var.environment}-lake"]
  prefix_rules     = { "" = { infrequent_access_after_days = 30, expire_after_days = 365 } }
  tags             = local.tags
}

module "lake_bucket" {
  source                             = "../secure_bucket"
  name                               = "${var.bucket_prefix}-${var.environment}-lake"
  kms_key_arn                        = module.kms.arn
  noncurrent_version_expiration_days = 7
  access_log_bucket                  = module.access_log_bucket.name
  # Landing files are only read once, by ingestion (bronze keeps their rows and names).
  prefix_rules = {
    "${local.lake_prefix}/landing/" = {
      infrequent_access_after_days = 30
      expire_after_days            = var.landing_retention_days
    }
  }
  tags = local.tags
}

# Delta Lake's S3DynamoDBLogStore: Spark writers on several clusters commit through this table
# (S3 has no put-if-absent for them). Schema fixed by Delta: tablePath + fileName, TTL expireTime.
resource "aws_dynamodb_table" "delta_log" {
  name                        = "${local.name}-delta-log"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "tablePath"
  range_key                   = "fileName"
  deletion_protection_enabled = true

  attribute {
    name = "tablePath"
    type = "S"
  }
  attribute {
    name = "fileName"
    type = "S"
  }
  ttl {
    attribute_name = "expireTime"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = module.kms.arn
  }
  tags = local.tags
}

resource "aws_ecr_repository" "lakehouse" {
  name                 = "${local.name}/lakehouse"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = module.kms.arn
  }
  tags = local.tags
}

module "network" {
  source             = "../network"
  name               = local.name
  cidr_block         = var.vpc_cidr
  availability_zones = var.availability_zones
  az_count           = var.az_count
  kms_key_arn        = module.kms.arn
  tags               = local.tags
}

module "eks" {
  source              = "../eks"
  name                = local.name
  vpc_id              = module.network.vpc_id
  vpc_cidr            = module.network.vpc_cidr
  subnet_ids          = module.network.private_subnet_ids
  public_access_cidrs = var.eks_public_access_cidrs
  kms_key_arn         = module.kms.arn
  admin_role_arns     = var.admin_role_arns
  node_instance_types = var.node_instance_types
  node_capacity_type  = var.node_capacity_type
  node_min            = var.node_min
  node_desired        = var.node_min
  node_max            = var.node_max
  tags                = local.tags
}

module "secrets" {
  source        = "../secrets"
  environment   = var.environment
  kms_key_arn   = module.kms.arn
  prefect_cloud = var.prefect_cloud
  tags          = local.tags
}

module "msk" {
  source                   = "../msk"
  name                     = local.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.eks.node_security_group_id
  kms_key_arn              = module.kms.arn
  scram_secret_arn         = module.secrets.msk_scram_secret_arn
  broker_count             = var.kafka_broker_count
  instance_type            = var.kafka_instance_type
  tags                     = local.tags
}

module "redis" {
  source                   = "../redis"
  name                     = local.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.eks.node_security_group_id
  kms_key_arn              = module.kms.arn
  auth_token               = module.secrets.values["redis-auth-token"]
  node_type                = var.redis_node_type
  tags                     = local.tags
}

module "postgres" {
  source                   = "../postgres"
  name                     = local.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.eks.node_security_group_id
  kms_key_arn              = module.kms.arn
  master_password          = module.secrets.values["postgres-password"]
  instance_class           = var.postgres_instance_class
  multi_az                 = var.postgres_multi_az
  tags                     = local.tags
}

# Least privilege: named actions on the lake bucket, its key and the commit table; nothing else.
locals {
  lake_statements = [
    {
      sid       = "LakeBucketList"
      actions   = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
      resources = [module.lake_bucket.arn]
    },
    {
      sid = "LakeObjectsReadWrite"
      actions = [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
      ]
      resources = ["${module.lake_bucket.arn}/${local.lake_prefix}/*"]
    },
    {
      sid       = "LakeKey"
      actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
      resources = [module.kms.arn]
    },
  ]
  delta_commit_statement = {
    sid       = "DeltaCommitTable"
    actions   = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.delta_log.arn]
  }
  prefect_secret = var.prefect_cloud ? "prefect-api-key" : "postgres-password"

  irsa = {
    # Flow runs: the Spark driver and executors, and the Ray job submissions they make.
    spark = concat(local.lake_statements, [local.delta_commit_statement])
    # Ray pods: features, training and serving read and write the lake through delta-rs
    # (conditional writes, no commit table) and pyarrow.
    ray = local.lake_statements
    # The worker only starts Kubernetes jobs; it reads nothing but its own Prefect credential.
    prefect-worker = [
      {
        sid       = "PrefectCredential"
        actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
        resources = [module.secrets.arns[local.prefect_secret]]
      },
      {
        sid       = "PrefectCredentialKey" # the secret is encrypted with the platform key
        actions   = ["kms:Decrypt"]
        resources = [module.kms.arn]
      },
    ]
  }
}

module "irsa" {
  source            = "../irsa_role"
  for_each          = local.irsa
  name              = "${local.name}-${each.key}"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  namespace         = local.namespace
  service_account   = each.key
  statements        = each.value
  tags              = local.tags
}

module "ray_manifests" {
  source    = "../ray_manifests"
  namespace = local.namespace
  image     = var.image
  head      = var.ray_head
  worker    = var.ray_worker
}

module "prefect_job_template" {
  source    = "../prefect_job_template"
  namespace = local.namespace
  image     = var.image
}

locals {
  # config/prod.yml's ${VAR} references (docs/deploy.md maps each to its key).
  environment = {
    LAKEHOUSE_ENV           = "prod"
    AWS_REGION              = data.aws_region.current.region
    LAKE_ROOT_URI           = local.lake_root_uri
    DELTA_COMMIT_TABLE      = aws_dynamodb_table.delta_log.name
    SPARK_MASTER_URL        = local.spark_master
    SPARK_K8S_NAMESPACE     = local.namespace
    SPARK_IMAGE             = var.image
    RAY_ADDRESS             = module.ray_manifests.ray_address
    SERVE_URL               = module.ray_manifests.serve_url
    KAFKA_BOOTSTRAP_SERVERS = module.msk.bootstrap_brokers_sasl_scram
    KAFKA_SASL_USERNAME     = "lakehouse"
    KAFKA_SASL_MECHANISM    = "SCRAM-SHA-512"
    # delta-rs writers (Ray jobs) commit with S3 conditional writes (If-None-Match), no table.
    AWS_CONDITIONAL_PUT = "etag"
    REDIS_HOST          = module.redis.primary_endpoint
    METASTORE_JDBC_URL  = "jdbc:postgresql://${module.postgres.address}:${module.postgres.port}/metastore?sslmode=require"
  }
  secret_environment = {
    KAFKA_SASL_PASSWORD = module.secrets.values["kafka-scram-password"]
    REDIS_PASSWORD      = module.secrets.values["redis-auth-token"]
    # Feast's Redis connection string (ml.online_store.connection_string): TLS and AUTH.
    REDIS_URL        = "${module.redis.primary_endpoint}:6379,ssl=true,password=${module.secrets.values["redis-auth-token"]}"
    RAY_AUTH_TOKEN   = module.secrets.values["ray-auth-token"]
    SERVE_AUTH_TOKEN = module.secrets.values["serve-auth-token"]
  }
}

data "aws_secretsmanager_secret_version" "prefect_api_key" {
  count     = var.prefect_cloud ? 1 : 0
  secret_id = module.secrets.arns["prefect-api-key"]
}

module "platform" {
  source                     = "../platform"
  namespace                  = local.namespace
  irsa_role_arns             = { for k, m in module.irsa : k => m.arn }
  environment                = local.environment
  secret_environment         = local.secret_environment
  ray_auth_token             = module.secrets.values["ray-auth-token"]
  ray_manifests              = module.ray_manifests.manifests
  prefect_base_job_template  = jsonencode(module.prefect_job_template.base_job_template)
  prefect_cloud              = var.prefect_cloud
  prefect_cloud_account_id   = var.prefect_cloud_account_id
  prefect_cloud_workspace_id = var.prefect_cloud_workspace_id
  prefect_api_key            = var.prefect_cloud ? data.aws_secretsmanager_secret_version.prefect_api_key[0].secret_string : ""
  prefect_database_url       = "postgresql+asyncpg://${module.postgres.username}:${module.secrets.values["postgres-password"]}@${module.postgres.address}:${module.postgres.port}/prefect?ssl=require"
}
