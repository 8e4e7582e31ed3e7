#!/usr/bin/env bash
# The infrastructure-as-code checks of `make test` (`make iac`); CI runs exactly this.
#   bash terraform/check.sh [TREE]     TREE defaults to terraform/ (tests pass a broken copy)
# Steps (IAC_STEPS, default all three, in this order):
#  fmt      terraform fmt -check, where terraform is installed (CI machines may lack it);
#  checks   terraform/checks.py: the platform's invariants and the module wiring, from the parsed
#           HCL (always), plus `terraform validate` wherever providers can be installed and a
#           real render of the KubeRay manifests (where terraform is installed); its docstring
#           says why that is what still means something offline;
#  checkov  checkov from PyPI, pinned with its whole dependency tree (checkov-constraints.txt), in
#           uv's cached tool environment (its pins clash with the project's), zero failed checks:
#           every skip is justified inline in the .tf files.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECKOV_VERSION=3.3.30
PYTHON="${PYTHON:-.venv/bin/python}"
TREE="${1:-terraform}"
STEPS=" ${IAC_STEPS:-fmt checks checkov} "
have_terraform=$(command -v terraform >/dev/null 2>&1 && echo yes || echo no)

if [[ $STEPS == *" fmt "* ]]; then
    if [[ $have_terraform == yes ]]; then
        echo "== terraform fmt -check"
        TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff "$TREE"
    else
        echo "== terraform fmt -check: skipped, terraform is not installed"
    fi
fi

if [[ $STEPS == *" checks "* ]]; then
    if [[ $have_terraform == yes ]]; then
        echo "== invariants, wiring, validate, render"
        "$PYTHON" terraform/checks.py --terraform "$TREE"
    else
        echo "== invariants, wiring (validate and render skipped: terraform is not installed)"
        "$PYTHON" terraform/checks.py "$TREE"
    fi
fi

if [[ $STEPS == *" checkov "* ]]; then
    if command -v uvx >/dev/null 2>&1; then
        uvx=(uvx)
    elif command -v uv >/dev/null 2>&1; then
        uvx=(uv tool run)
    else
        uvx=(python3 -m uv tool run)
    fi
    echo "== checkov $CHECKOV_VERSION"
    # --skip-download: no call home for guideline links; the checks themselves ship in the package.
    "${uvx[@]}" --constraints terraform/checkov-constraints.txt --from "checkov==$CHECKOV_VERSION" \
        checkov -d "$TREE" --skip-download --compact --quiet
fi
