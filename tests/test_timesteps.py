import pytest
import torch

from propdreamer.core.guidance.timesteps import TimestepSchedule


def test_uniform_stays_in_range():
    t = TimestepSchedule().sample(0, 100, 5000, 1000, torch.Generator().manual_seed(0))
    assert t.min() >= 20 and t.max() <= 980 and t.max() > 900 and t.min() < 100


def test_step_annealing_drops_t_max_halfway():
    s = TimestepSchedule("step", annealed_max=0.5, anneal_at=0.5)
    early = s.sample(10, 100, 2000, 1000, torch.Generator().manual_seed(0))
    late = s.sample(60, 100, 2000, 1000, torch.Generator().manual_seed(0))
    assert early.max() > 900 and late.max() <= 500


def test_sqrt_and_linear_endpoints():
    s = TimestepSchedule("sqrt")
    assert s.sample(0, 100, 1, 1000).item() == 980 and s.sample(100, 100, 1, 1000).item() == 20
    assert s.sample(25, 100, 1, 1000).item() == round(980 - 960 * 0.5)
    lin = TimestepSchedule("linear")
    assert lin.sample(0, 100, 1, 1000).item() == 980 and lin.sample(50, 100, 1, 1000).item() == 500
    assert lin.sample(100, 100, 1, 1000).item() == 20


def test_bad_schedule_names_the_choices():
    with pytest.raises(ValueError, match="uniform, step, sqrt or linear"):
        TimestepSchedule("cosine")
