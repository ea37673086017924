"""The order queued jobs start in (server/queue_order.py): its estimate of a job's length, and where a
new job joins the queue."""

from propdreamer.core.stage1.presets import PRESETS
from propdreamer.core.stage2.presets import REFINE_PRESETS
from propdreamer.server.pool import cpu_threads
from propdreamer.server.queue_order import PRESET_WORK, expected_work, insert_at


def test_the_table_restates_the_presets():
    for name, (coarse, geometry, texture) in PRESET_WORK.items():
        refine = REFINE_PRESETS[name]
        assert coarse == (PRESETS[name].steps, PRESETS[name].resolutions)
        assert geometry == (refine.geometry.steps, refine.geometry.resolutions)
        assert texture == (refine.texture.steps, refine.texture.resolutions)
    assert set(PRESET_WORK) == set(PRESETS) == set(REFINE_PRESETS)


def test_expected_work_orders_presets_and_kinds():
    draft, standard, high = (expected_work({"kind": "generate", "preset": p}) for p in ("draft", "standard", "high"))
    assert draft < standard < high
    assert expected_work({"kind": "texture", "preset": "standard"}) < expected_work({"kind": "refine", "preset": "standard"}) < standard
    assert expected_work({"preset": "draft", "steps": 3000}) > expected_work({"preset": "draft"})  # stage one's steps override
    assert draft == 300 + 120 + 80  # 32 px throughout: one unit a step
    assert expected_work({"preset": "standard", "kind": "texture"}) == 800 * 16**2


def test_insert_at_fifo_and_longest_first():
    queue, work = ["a", "b", "c"], {"a": 5.0, "b": 3.0, "c": 3.0}
    assert insert_at(queue, work, 10.0, "fifo") == 3
    assert insert_at(queue, work, 4.0, "longest-first") == 1  # after every job at least as long
    assert insert_at(queue, work, 3.0, "longest-first") == 3  # equal lengths keep their submission order
    assert insert_at(queue, work, 10.0, "longest-first", pinned=1) == 1  # a retried job stays first


def test_cpu_workers_share_the_cores():
    assert cpu_threads(["cpu", "cpu"], 2) == 1 and cpu_threads(["cpu"], 16) == 16 and cpu_threads(["cpu"] * 3, 2) == 1
    assert cpu_threads(["cuda:0", "cpu"], 8) == 8  # only CPU workers count
