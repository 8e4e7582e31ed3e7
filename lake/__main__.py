"""`python -m lake`: the `lakehouse` CLI without the console script (what subprocess tests run)."""

from lake.cli import app

if __name__ == "__main__":
    app(prog_name="lakehouse")
