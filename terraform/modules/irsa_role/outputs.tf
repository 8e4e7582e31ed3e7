output "arn" {
  description = "Role ARN (the eks.amazonaws.com/role-arn annotation of the service account)."
  value       = aws_iam_role.this.arn
}
