"""`python -m xenvol`: the xenvol command."""

import sys

from .cli import main

sys.exit(main())
