"""`python -m edgectl ...` is `edgectl ...`."""
from edgectl.cli import main

if __name__ == "__main__":
    main()
