import sys

from sampletopo.cli import main

sys.exit(main())
