import sys

from dekasim.cli import main

sys.exit(main())
