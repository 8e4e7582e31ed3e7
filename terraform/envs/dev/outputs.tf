# What config/prod.yml references: `terraform output -json config_env` is the lakehouse-env
# ConfigMap's content (docs/deploy.md, "Outputs to config/prod.yml").
output "config_env" {
  description = "Environment variables config/prod.yml references."
  value       = module.lakehouse.config_env
}

output "lake_root_uri" {
  description = "lake.root."
  value       = module.lakehouse.lake_root_uri
}

output "delta_commit_table" {
  description = "spark.conf's S3DynamoDBLogStore table."
  value       = module.lakehouse.delta_commit_table
}

output "aws_region" {
  description = "object_store.region."
  value       = module.lakehouse.aws_region
}

output "spark_master_url" {
  description = "spark.master."
  value       = module.lakehouse.spark_master_url
}

output "ray_address" {
  description = "ray.address."
  value       = module.lakehouse.ray_address
}

output "serve_url" {
  description = "Ray Serve inside the cluster."
  value       = module.lakehouse.serve_url
}

output "kafka_bootstrap_servers" {
  description = "Kafka bootstrap servers (SASL_SSL)."
  value       = module.lakehouse.kafka_bootstrap_servers
}

output "redis_host" {
  description = "Feast online store host."
  value       = module.lakehouse.redis_host
}

output "postgres_address" {
  description = "Metastore and Prefect database host."
  value       = module.lakehouse.postgres_address
}

output "prefect_api_url" {
  description = "PREFECT_API_URL."
  value       = module.lakehouse.prefect_api_url
}

output "eks_cluster_name" {
  description = "EKS cluster name."
  value       = module.lakehouse.eks_cluster_name
}

output "ecr_repository_url" {
  description = "Where to push the lakehouse image."
  value       = module.lakehouse.ecr_repository_url
}

output "secret_arns" {
  description = "Secrets Manager ARNs by name."
  value       = module.lakehouse.secret_arns
}
