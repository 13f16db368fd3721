"""What every command-line entry point shares: the user's errors, and output into a pipe
that closes early.

    @quiet_on_closed_pipe
    def main(argv=None): ...

A UsageError is a problem the user fixes by changing the command line or the files it
names; a command prints its message as one line and exits with status 2.

``train.py ... | head -n 1`` or ``evaluate.py ... --json --image *.png | head``:
once the reader has gone, the next write (or the flush at exit) raises
BrokenPipeError, and Python would print a traceback, or "Exception ignored ...
BrokenPipeError" and exit 120. A wrapped main instead stops there quietly, as
command-line tools do when SIGPIPE ends them, with the shell's status for that,
128 + SIGPIPE = 141. What it wrote before stays written; a training run's last
checkpoint stays whole (checkpoints are written atomically).
"""
import functools
import os
import signal
import sys

CLOSED_PIPE_STATUS = 128 + signal.SIGPIPE


class UsageError(Exception):
    """A problem the user fixes by changing the command line or the files it names."""


def quiet_on_closed_pipe(main):
    """``main`` that returns CLOSED_PIPE_STATUS, printing nothing, when its output pipe
    closes; its stdout is flushed before it returns, so that no write is left for exit."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            try:
                return main(*args, **kwargs)
            finally:                            # also on SystemExit (argparse's --help)
                sys.stdout.flush()
        except BrokenPipeError:
            discard_output()
            return CLOSED_PIPE_STATUS
    return wrapped


def discard_output():
    """Point stdout and stderr at /dev/null, so that the interpreter's own flush at exit
    finds no closed pipe to complain about."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):           # no file descriptor (a test's capture)
            pass
    os.close(devnull)
