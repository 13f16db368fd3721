import io
import itertools

from experiment.progress import EpochProgress, format_seconds


def test_progress_line_reports_rate_and_the_epochs_and_runs_eta(monkeypatch):
    clock = itertools.chain([100.0], itertools.repeat(110.0))
    monkeypatch.setattr("experiment.progress.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    bar = EpochProgress(epoch=2, epochs=5, steps=100, batch_size=10, start_step=20, stream=out,
                        validation_seconds=4.0)
    bar.show(step=70, loss=0.5)           # 50 steps of 10 images in 10 s
    line = out.getvalue()
    assert "epoch 2/5 step 70/100" in line
    assert "loss 0.5000" in line
    assert "50 img/s" in line
    # 30 steps left at 0.2 s (6 s), 3 more epochs of 100 steps (60 s), 4 validations of 4 s
    assert "ETA epoch 0:06, run 1:22" in line


def test_validation_shows_the_images_done_at_the_displays_pace(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("experiment.progress.time.perf_counter", lambda: now[0])
    out = io.StringIO()
    bar = EpochProgress(epoch=1, epochs=2, steps=10, batch_size=10, stream=out)
    bar.validating(1000, 12000)           # not due yet: nothing
    now[0] = 31.0                         # a log file gets a line every 30 s
    bar.validating(5000, 12000)
    bar.validating(6000, 12000)           # shown a moment ago: nothing
    bar.validating(12000, 12000)
    assert out.getvalue() == "epoch 1/2 validating 5000/12000 images\n"


def test_format_seconds():
    assert format_seconds(59.6) == "1:00"
    assert format_seconds(3725) == "1:02:05"
