"""one module per command group; only cli.py and edge/commands parse arguments and print"""
