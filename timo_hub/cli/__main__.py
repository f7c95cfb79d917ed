"""`python -m timo_hub.cli` is `timo-hub`."""

from timo_hub.cli import main

main()
