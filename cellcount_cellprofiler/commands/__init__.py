"""Subcommands of ``cellcount``: each module has ``add_parser(subparsers)`` that registers it with a ``run``."""
