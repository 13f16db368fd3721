"""A one-line progress display for an epoch: step, loss, images/s, ETA.

On a terminal the line is rewritten in place (carriage return) about once a
second; in a log file a line is written every 30 seconds instead. Reading the
loss is the only host-device sync, and it happens only when a line is shown.
"""
import sys
import time


def format_seconds(seconds):
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class EpochProgress:
    def __init__(self, epoch, epochs, steps, batch_size, start_step=0, stream=sys.stderr,
                 enabled=True):
        self.epoch, self.epochs, self.steps, self.batch_size = epoch, epochs, steps, batch_size
        self.start_step = start_step
        self.stream, self.enabled = stream, enabled
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.interval = 1.0 if self.tty else 30.0
        self.start = time.perf_counter()
        self.last_shown = self.start

    def due(self):
        """True when a line should be shown now (a cheap host-side check)."""
        return self.enabled and time.perf_counter() - self.last_shown >= self.interval

    def show(self, step, loss, final=False):
        """Show progress after ``step`` steps (1-based) with the running mean loss."""
        if not self.enabled:
            return
        now = time.perf_counter()
        done = step - self.start_step
        elapsed = max(now - self.start, 1e-9)
        rate = done * self.batch_size / elapsed
        eta = (self.steps - step) * elapsed / max(done, 1)
        line = (f"epoch {self.epoch}/{self.epochs} step {step}/{self.steps} "
                f"loss {loss:.4f} {rate:,.0f} img/s "
                + (f"{format_seconds(elapsed)} elapsed" if final else f"ETA {format_seconds(eta)}"))
        if self.tty:
            self.stream.write("\r" + line.ljust(78) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_shown = now
