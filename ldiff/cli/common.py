"""What every entry point shares: logging set-up and turning an LdiffError into one sentence."""
from __future__ import annotations

import logging
import sys
from typing import Callable


def run_command(function: Callable[[], int | None]) -> None:
    """Run ``function``; a user-facing error prints its one sentence (no traceback) and exits with 1."""
    from ldiff.errors import LdiffError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        status = function()
    except LdiffError as error:
        print(f"ldiff: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("ldiff: interrupted; complete outputs are kept, nothing half-written is left.", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
