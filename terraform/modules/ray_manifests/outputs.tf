output "ray_cluster" {
  description = "The RayCluster for Ray jobs (features, training, batch scoring)."
  value       = local.ray_cluster
}

output "ray_service" {
  description = "The RayService running serve/config.yaml."
  value       = local.ray_service
}

output "manifests" {
  description = "Both resources, in apply order."
  value       = [local.ray_cluster, local.ray_service]
}

output "ray_address" {
  description = "RAY_ADDRESS for job submission from inside the cluster (the jobs head service, dashboard port)."
  value       = "http://${var.name}-jobs-head-svc.${var.namespace}.svc.cluster.local:8265"
}

output "serve_url" {
  description = "Ray Serve HTTP inside the cluster (the RayService's serve service)."
  value       = "http://${var.name}-serve-serve-svc.${var.namespace}.svc.cluster.local:8000"
}
