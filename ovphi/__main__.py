import sys

from ovphi.cli import main

sys.exit(main())
