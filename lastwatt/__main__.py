"""``python -m lastwatt``: the same command line as the ``lastwatt`` script."""

from lastwatt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
