"""`python -m dgpg.cli`: the `dgpg` command."""

from dgpg.cli import main

main()
