# prod at small scale (docs/deploy.md prices it): three on-demand nodes (room for both Ray
# clusters, Prefect and a Spark driver), Multi-AZ Postgres and Redis, three Kafka brokers.
# Sizes only; the platform is modules/lakehouse.
module "lakehouse" {
  source                     = "../../modules/lakehouse"
  environment                = "prod"
  bucket_prefix              = var.bucket_prefix
  availability_zones         = var.availability_zones
  vpc_cidr                   = "10.40.0.0/16"
  admin_role_arns            = var.admin_role_arns
  eks_public_access_cidrs    = var.eks_public_access_cidrs
  image                      = var.image
  node_instance_types        = ["m7i.xlarge"]
  node_capacity_type         = "ON_DEMAND"
  node_min                   = 3
  node_max                   = 6
  kafka_broker_count         = 3
  kafka_instance_type        = "kafka.t3.small"
  redis_node_type            = "cache.t4g.small"
  postgres_instance_class    = "db.t4g.small"
  postgres_multi_az          = true
  landing_retention_days     = 365
  ray_head                   = { cpu = "1", memory = "4Gi" }
  ray_worker                 = { cpu = "3", memory = "12Gi", min = 1, max = 4 }
  prefect_cloud              = var.prefect_cloud
  prefect_cloud_account_id   = var.prefect_cloud_account_id
  prefect_cloud_workspace_id = var.prefect_cloud_workspace_id
}
