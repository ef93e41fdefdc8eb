"""``python -m mmgen`` runs the command line, for environments without the ``mmgen`` script on PATH."""

from mmgen.cli import main

main()
