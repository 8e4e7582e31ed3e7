variable "name" {
  description = "Alias of the key (without alias/)."
  type        = string
}

variable "description" {
  description = "What the key encrypts."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
