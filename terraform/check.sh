#!/usr/bin/env bash
# The infrastructure-as-code checks of `make test` (`make iac`); CI runs exactly this.
#  1. terraform fmt -check, where terraform is installed (CI machines may lack it);
#  2. terraform/checks.py: the platform's invariants and the module wiring, from the parsed HCL
#     (always), plus `terraform validate` wherever providers can be installed and a real render
#     of the KubeRay manifests (where terraform is installed); see the docstring there for why;
#  3. checkov, pinned, from PyPI, in uv's cached tool environment (its pins clash with the
#     project's), with zero failed checks: every skip is justified inline in the .tf files.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECKOV_VERSION=3.3.30
PYTHON="${PYTHON:-.venv/bin/python}"

if command -v terraform >/dev/null 2>&1; then
    echo "== terraform fmt -check"
    TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff terraform
    echo "== invariants, wiring, validate, render"
    "$PYTHON" terraform/checks.py --terraform
else
    echo "terraform not installed: fmt -check, validate and the manifest render are skipped"
    echo "== invariants, wiring"
    "$PYTHON" terraform/checks.py
fi

if command -v uvx >/dev/null 2>&1; then
    uvx=(uvx)
elif command -v uv >/dev/null 2>&1; then
    uvx=(uv tool run)
else
    uvx=(python3 -m uv tool run)
fi
echo "== checkov $CHECKOV_VERSION"
# --skip-download: no call home for guideline links; the checks themselves ship in the package.
"${uvx[@]}" --from "checkov==$CHECKOV_VERSION" checkov -d terraform --skip-download --compact --quiet
