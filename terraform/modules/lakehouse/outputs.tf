# Each output feeds one reference of config/prod.yml (docs/deploy.md has the table); `config_env`
# is all of them at once, exactly what the lakehouse-env ConfigMap holds.
output "config_env" {
  description = "Environment variables config/prod.yml references, by name (non-secret)."
  value       = local.environment
}

output "lake_root_uri" {
  description = "lake.root (LAKE_ROOT_URI)."
  value       = local.lake_root_uri
}

output "lake_bucket" {
  description = "The lake bucket."
  value       = module.lake_bucket.name
}

output "delta_commit_table" {
  description = "DynamoDB table of Spark's S3DynamoDBLogStore (DELTA_COMMIT_TABLE)."
  value       = aws_dynamodb_table.delta_log.name
}

output "aws_region" {
  description = "object_store.region and the commit table's region (AWS_REGION)."
  value       = data.aws_region.current.region
}

output "spark_master_url" {
  description = "spark.master (SPARK_MASTER_URL)."
  value       = local.spark_master
}

output "ray_address" {
  description = "ray.address (RAY_ADDRESS)."
  value       = module.ray_manifests.ray_address
}

output "serve_url" {
  description = "Ray Serve inside the cluster (SERVE_URL)."
  value       = module.ray_manifests.serve_url
}

output "kafka_bootstrap_servers" {
  description = "Kafka bootstrap servers, SASL_SSL/SCRAM-SHA-512 (KAFKA_BOOTSTRAP_SERVERS)."
  value       = module.msk.bootstrap_brokers_sasl_scram
}

output "redis_host" {
  description = "Feast online store host, TLS on 6379 (REDIS_HOST)."
  value       = module.redis.primary_endpoint
}

output "postgres_address" {
  description = "RDS host of the metastore and prefect databases."
  value       = module.postgres.address
}

output "prefect_api_url" {
  description = "PREFECT_API_URL."
  value       = module.platform.prefect_api_url
}

output "eks_cluster_name" {
  description = "EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = module.eks.name
}

output "eks_endpoint" {
  description = "Kubernetes API endpoint (provider configuration)."
  value       = module.eks.endpoint
}

output "eks_certificate_authority" {
  description = "Base64 CA of the Kubernetes API (provider configuration)."
  value       = module.eks.certificate_authority
}

output "ecr_repository_url" {
  description = "Push the lakehouse image here."
  value       = aws_ecr_repository.lakehouse.repository_url
}

output "secret_arns" {
  description = "Secrets Manager ARNs by name."
  value       = module.secrets.arns
}

output "irsa_role_arns" {
  description = "IRSA role per service account."
  value       = { for k, m in module.irsa : k => m.arn }
}
