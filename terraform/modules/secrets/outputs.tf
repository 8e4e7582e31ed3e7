output "values" {
  description = "Generated secret values by name (for Kubernetes secrets and the services that need them)."
  value       = { for k, v in random_password.this : k => v.result }
  sensitive   = true
}

output "arns" {
  description = "Secret ARNs by name."
  value = merge(
    { for k, v in aws_secretsmanager_secret.this : k => v.arn },
    { "kafka-scram" = aws_secretsmanager_secret.msk_scram.arn },
    var.prefect_cloud ? { "prefect-api-key" = aws_secretsmanager_secret.prefect_api_key[0].arn } : {},
  )
}

output "msk_scram_secret_arn" {
  description = "The AmazonMSK_ secret to associate with the MSK cluster."
  value       = aws_secretsmanager_secret.msk_scram.arn
}
