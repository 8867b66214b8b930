"""``python -m edgekd.cli`` (torchrun runs distill this way)."""

from edgekd.cli import main

main()
