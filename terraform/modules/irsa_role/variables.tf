variable "name" {
  description = "Role name."
  type        = string
}

variable "oidc_provider_arn" {
  description = "The cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_issuer" {
  description = "The OIDC issuer host and path (no https://)."
  type        = string
}

variable "namespace" {
  description = "Namespace of the service account."
  type        = string
}

variable "service_account" {
  description = "Name of the service account allowed to assume the role."
  type        = string
}

variable "statements" {
  description = "Allow statements: named actions (no wildcards) on named resources."
  type = list(object({
    sid       = string
    actions   = list(string)
    resources = list(string)
  }))
  validation {
    condition     = alltrue([for s in var.statements : alltrue([for a in s.actions : !strcontains(a, "*")])])
    error_message = "IRSA statements must name their actions: no wildcard (*) actions."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
