import io

from experiment.progress import EpochProgress, format_seconds


def test_progress_line_reports_rate_and_eta_from_the_start_step(monkeypatch):
    clock = iter([100.0, 110.0])
    monkeypatch.setattr("experiment.progress.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    bar = EpochProgress(epoch=2, epochs=5, steps=100, batch_size=10, start_step=20, stream=out)
    bar.show(step=70, loss=0.5)           # 50 steps of 10 images in 10 s
    line = out.getvalue()
    assert "epoch 2/5 step 70/100" in line
    assert "loss 0.5000" in line
    assert "50 img/s" in line
    assert "ETA 0:06" in line              # 30 steps left at 0.2 s per step


def test_format_seconds():
    assert format_seconds(59.6) == "1:00"
    assert format_seconds(3725) == "1:02:05"
