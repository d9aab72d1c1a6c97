"""``python -m emo_core``: see ``emo_core.cli``."""

import sys

from emo_core.cli import main

sys.exit(main())
