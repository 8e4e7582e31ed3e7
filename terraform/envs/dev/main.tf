# dev: the smallest platform that still has every part (single-AZ database, spot nodes, one
# small Ray worker). Sizes only; the platform itself is modules/lakehouse.
module "lakehouse" {
  source                     = "../../modules/lakehouse"
  environment                = "dev"
  bucket_prefix              = var.bucket_prefix
  availability_zones         = var.availability_zones
  vpc_cidr                   = "10.41.0.0/16"
  admin_role_arns            = var.admin_role_arns
  eks_public_access_cidrs    = var.eks_public_access_cidrs
  image                      = var.image
  node_instance_types        = ["m7i.large", "m6i.large"]
  node_capacity_type         = "SPOT"
  node_min                   = 3
  node_max                   = 4
  kafka_broker_count         = 3
  kafka_instance_type        = "kafka.t3.small"
  redis_node_type            = "cache.t4g.micro"
  postgres_instance_class    = "db.t4g.micro"
  postgres_multi_az          = false
  landing_retention_days     = 90
  ray_head                   = { cpu = "1", memory = "3Gi" }
  ray_worker                 = { cpu = "1", memory = "4Gi", min = 1, max = 2 }
  prefect_cloud              = var.prefect_cloud
  prefect_cloud_account_id   = var.prefect_cloud_account_id
  prefect_cloud_workspace_id = var.prefect_cloud_workspace_id
}
