output "bootstrap_brokers_sasl_scram" {
  description = "Bootstrap servers for SASL_SSL/SCRAM-SHA-512 clients."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "arn" {
  description = "Cluster ARN."
  value       = aws_msk_cluster.this.arn
}
