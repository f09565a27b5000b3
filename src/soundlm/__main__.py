"""`python -m soundlm ...`: the command line, for launchers that take a module (`accelerate launch -m
soundlm train lm ...`, `torchrun -m soundlm ...`)."""

from soundlm.cli import main

main()
