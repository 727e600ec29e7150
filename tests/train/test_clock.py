"""Training time excludes pauses; tokens per second are over training time."""

from multihead.train.clock import TokenRate, TrainingClock


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_pauses_do_not_count_as_training_time():
    t = FakeTime()
    clock = TrainingClock(t)
    t.now += 2.0
    with clock.pause():
        t.now += 10.0
    t.now += 1.0
    assert clock.trained() == 3.0
    with clock.pause():
        t.now += 5.0
    assert clock.trained() == 3.0


def test_a_pause_ended_by_an_exception_still_counts_as_a_pause():
    t = FakeTime()
    clock = TrainingClock(t)
    try:
        with clock.pause():
            t.now += 4.0
            raise RuntimeError("checkpoint failed")
    except RuntimeError:
        pass
    assert clock.trained() == 0.0


def test_token_rate_is_over_training_time_since_restart():
    t = FakeTime()
    clock = TrainingClock(t)
    rate = TokenRate(clock)
    t.now += 2.0
    rate.add(1000)
    with clock.pause():  # an evaluation in the window does not dilute the rate
        t.now += 8.0
    assert rate.per_s() == 500.0
    rate.restart()
    t.now += 1.0
    rate.add(300)
    assert rate.per_s() == 300.0
