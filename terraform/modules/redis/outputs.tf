output "primary_endpoint" {
  description = "Primary endpoint host (TLS, port 6379)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}
