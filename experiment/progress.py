"""A one-line progress display for an epoch: step, loss, images/s, the epoch's and the run's ETA,
and the images validated so far while a validation runs.

On a terminal the line is rewritten in place (carriage return) about once a
second; in a log file a line is written every 30 seconds instead. Reading the
loss is the only host-device sync, and it happens only when a line is shown.
The run's ETA takes the remaining epochs at this epoch's pace, plus the last
validation's time once per remaining epoch.
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
                 enabled=True, validation_seconds=0.0):
        self.epoch, self.epochs, self.steps, self.batch_size = epoch, epochs, steps, batch_size
        self.start_step = start_step
        self.stream, self.enabled = stream, enabled
        self.validation_seconds = validation_seconds    # the last validation's, for the ETA
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.interval = 1.0 if self.tty else 30.0
        self.start = time.perf_counter()
        self.last_shown = self.start
        self._open = False      # a line without its newline is on the terminal

    def due(self):
        """True when a line should be shown now (a cheap host-side check)."""
        return self.enabled and time.perf_counter() - self.last_shown >= self.interval

    def show(self, step, loss, final=False):
        """Show progress after ``step`` steps (1-based) with the running mean loss."""
        if not self.enabled:
            return
        done = step - self.start_step
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = done * self.batch_size / elapsed
        per_step = elapsed / max(done, 1)
        eta = (self.steps - step) * per_step
        later = self.epochs - self.epoch
        run_eta = eta + later * self.steps * per_step + (later + 1) * self.validation_seconds
        line = (f"epoch {self.epoch}/{self.epochs} step {step}/{self.steps} "
                f"loss {loss:.4f} {rate:,.0f} img/s "
                + (f"{format_seconds(elapsed)} elapsed" if final else
                   f"ETA epoch {format_seconds(eta)}, run {format_seconds(run_eta)}"))
        self._write(line, final)

    def validating(self, done, total):
        """Show how many of ``total`` images a validation has done (at the display's pace);
        at ``done == total`` end a line left open on a terminal."""
        if done >= total:
            if self._open:
                self.stream.write("\n")
                self._open = False
        elif self.due():
            self._write(f"epoch {self.epoch}/{self.epochs} validating {done}/{total} images",
                        final=False)

    def _write(self, line, final):
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(78) + ("\n" if final else ""))
            self._open = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_shown = time.perf_counter()
