"""`python -m lake`: the `lakehouse` CLI without the console script (what subprocess tests run)."""

from lake.cli import main

if __name__ == "__main__":
    main()
