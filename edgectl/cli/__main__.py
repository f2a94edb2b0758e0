"""`python -m edgectl.cli`: the edgectl program."""
from edgectl.cli import main

main()
