output "base_job_template" {
  description = "The work pool's base job template (prefect work-pool create/update --base-job-template)."
  value       = local.base_job_template
}
