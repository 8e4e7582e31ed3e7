output "namespace" {
  description = "Namespace of the platform."
  value       = kubernetes_namespace_v1.this.metadata[0].name
}

output "prefect_api_url" {
  description = "PREFECT_API_URL for workers and deployments."
  value       = local.prefect_api_url
}
