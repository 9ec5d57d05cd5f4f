import sys

from latentface.cli import main

sys.exit(main())
