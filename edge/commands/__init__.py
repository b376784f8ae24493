"""The ``maskgate`` command groups, one module per group: only cli.py and edge/commands parse arguments and print."""
