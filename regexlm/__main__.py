"""``python -m regexlm`` is the ``regexlm`` command."""

import sys

from regexlm.cli import main

sys.exit(main())
