"""``python -m gr2.cli``: the same as the ``gr2`` command."""

from gr2.cli import main

if __name__ == "__main__":  # vLLM spawns worker processes that re-import the main module
    main()
