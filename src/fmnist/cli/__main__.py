"""`python -m fmnist.cli`: the same as the `fmnist` command."""

from fmnist.cli import main

main()
