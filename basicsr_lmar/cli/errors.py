"""How a command-line tool of the plugin ends on a user's mistake: one message, exit code 2, no traceback.

    if __name__ == '__main__':
        run_main(main)          # main(argv) raises UserError (or OptionError, ...) for bad input

A user mistake (a :class:`basicsr_lmar.errors.UserError`: OptionError, DataError, CheckpointMismatchError,
ImageFileError ...) is printed as ``<prog>: error: <message>`` on stderr and the process exits with code 2, argparse's convention for usage errors, so shells and schedulers tell it
from a crash. Any other exception is a bug and keeps its full traceback. ``--debug`` on the command
line or ``BASICSR_LMAR_DEBUG=1`` in the environment shows the traceback of user mistakes too. Ctrl-C
ends with one line and exit code 130 (outputs are written atomically, so nothing partial is left).
"""
import os
import os.path as osp
import sys

from basicsr_lmar.errors import UserError

DEBUG_ENV_VAR = 'BASICSR_LMAR_DEBUG'
DEBUG_FLAG = '--debug'
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def debug_requested(argv=None):
    """True when ``--debug`` is among ``argv`` or ``BASICSR_LMAR_DEBUG`` is set to a true value."""
    argv = sys.argv[1:] if argv is None else argv
    value = os.environ.get(DEBUG_ENV_VAR, '').strip().lower()
    return DEBUG_FLAG in argv or value not in ('', '0', 'false', 'no', 'off')


def add_debug_argument(parser):
    parser.add_argument(DEBUG_FLAG, action='store_true',
                        help=f'show the traceback of input errors too (or set {DEBUG_ENV_VAR}=1)')


def run_main(main, argv=None, prog=None):
    """Calls ``main(argv)`` and turns a user mistake into one message on stderr and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or osp.basename(sys.argv[0])
    try:
        return main(argv)
    except KeyboardInterrupt:
        if debug_requested(argv):
            raise
        print(f'{prog}: interrupted', file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as error:
        if not isinstance(error, UserError) or debug_requested(argv):
            raise
        print(f'{prog}: error: {error}', file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
