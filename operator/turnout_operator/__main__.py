import sys

from turnout_operator.cli import main

sys.exit(main())
