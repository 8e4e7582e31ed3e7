terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.38"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }

  # State in the bootstrap bucket (terraform/bootstrap): partial configuration, the rest comes
  # from `terraform init -backend-config=...` (docs/deploy.md). S3-native locking, no DynamoDB.
  backend "s3" {
    key          = "dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "lakehouse", environment = "dev", managed-by = "terraform" }
  }
}

# Kubernetes and Helm talk to the cluster this root creates, with a token from the AWS CLI.
locals {
  kube_exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.lakehouse.eks_cluster_name, "--region", var.region]
  }
}

provider "kubernetes" {
  host                   = module.lakehouse.eks_endpoint
  cluster_ca_certificate = base64decode(module.lakehouse.eks_certificate_authority)
  exec {
    api_version = local.kube_exec.api_version
    command     = local.kube_exec.command
    args        = local.kube_exec.args
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.lakehouse.eks_endpoint
    cluster_ca_certificate = base64decode(module.lakehouse.eks_certificate_authority)
    exec                   = local.kube_exec
  }
}
