"""One module per ``sampletopo`` subcommand; each defines ``register(subparsers)``.

A command's ``register`` adds its parser and sets ``func`` to a callable taking the parsed
namespace and returning an exit code. Heavy imports go inside that callable so ``--help`` is fast.
"""
