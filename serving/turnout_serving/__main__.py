"""`python -m turnout_serving` is `turnout-serve`."""

from turnout_serving.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
