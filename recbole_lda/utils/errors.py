"""Errors that a user caused, and how the command-line tools report every error.

`UnknownNameError` and `did_you_mean` word a misspelt name ("unknown model 'LDa'; did you
mean LDA?").

`guarded(main)` runs a tool's main function and turns an exception into one line,
`error: ...`, on standard error, with exit status 2 for usage errors (an unknown model,
dataset or option, a value of the wrong type: `UsageError`) and 1 for data and runtime
errors. `--debug` on the command line (removed before the tool sees its arguments) or
RECBOLE_LDA_DEBUG=1 in the environment shows the traceback instead.
"""

import difflib
import os
import sys


class UsageError(ValueError):
    """The command was wrong (unknown name or option, bad value): exit status 2."""


class UnknownNameError(UsageError):
    """A model, dataset or option name that does not exist (a usage error)."""


def did_you_mean(name, known, prefix=""):
    """'; did you mean X?' for the closest names in `known` (case-insensitive), else ''.
    `prefix` goes before each suggested name (e.g. '--')."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(prefix + by_lower[c] for c in close)}?" if close else ""


def debug_requested(argv):
    return "--debug" in argv or os.environ.get("RECBOLE_LDA_DEBUG", "") not in ("", "0")


def guarded(main, argv=None):
    """Run `main(argv)` (argv: the arguments after the program name) as a command-line tool."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 -- the one place that reports every error
        if debug:
            raise
        message = str(err) or type(err).__name__
        if not isinstance(err, (UsageError, OSError, ValueError, KeyError, RuntimeError)):
            message = f"{type(err).__name__}: {message}"
        print(f"error: {message} (--debug shows the traceback)", file=sys.stderr)
        sys.exit(2 if isinstance(err, UsageError) else 1)
