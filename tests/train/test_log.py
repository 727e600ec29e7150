"""log.jsonl: a fresh run starts anew, a resumed one drops the records past its step."""

import json

from multihead.train.log import LOG, RunLog


def records(out):
    return [json.loads(line) for line in (out / LOG).read_text().splitlines()]


def test_fresh_resumed_and_other_process_logs(tmp_path):
    log = RunLog(tmp_path, main=True)
    for step in (1, 2, 3):
        log.write({"type": "train", "step": step})
    log.close()
    with (tmp_path / LOG).open("a") as f:
        f.write('{"type": "train", "st')  # a line cut short by a kill
    resumed = RunLog(tmp_path, main=True, resume_step=2)
    resumed.write({"type": "eval", "step": 3})
    resumed.close()
    assert records(tmp_path) == [
        {"type": "train", "step": 1},
        {"type": "train", "step": 2},
        {"type": "eval", "step": 3},
    ]
    RunLog(tmp_path, main=True).close()  # a fresh run into the same directory
    assert (tmp_path / LOG).read_text() == ""
    other = RunLog(tmp_path / "elsewhere", main=False)
    other.write({"type": "train", "step": 1})
    other.close()
    assert not (tmp_path / "elsewhere").exists()
