"""The one exception type for the user's mistakes, and how an entry point turns it into one sentence."""
from __future__ import annotations

import logging
import sys
from typing import Callable


class LdiffError(Exception):
    """A problem with the user's input or environment, explained in one sentence.

    Command-line entry points print the message (without a traceback) and exit with status 1.
    """


def run_command(function: Callable[[], int | None]) -> None:
    """Run ``function``; a user-facing error prints its one sentence (no traceback) and exits with 1."""
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
