"""Run summaries, the committed record of every finished run of a results script, and the
paired delta both results scripts report.

A results script trains runs into runs/ (not in git) and prints tables from their summaries.
The ledger (a JSON file under docs/data/, committed) keeps each finished run's final score and
train time keyed by its run directory, so the tables survive a fresh checkout and a recorded run
is not trained again. An entry also keeps the score of the teacher the run distilled from: a
recorded run made with another teacher (retrained, or trained by other code) does not count.
"""
import contextlib
import fcntl
import json
import os
import statistics


def summary(run_dir):
    """The summary record `distill train` writes last to metrics.jsonl, or None if unfinished."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    result = None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if "summary" in record:
                result = record["summary"]
    return result


def paired_delta(by_seed, base):
    """Mean over the seeds both have of (by_seed - base), or None; None scores (diverged runs)
    are left out. by_seed, base: {seed: score}."""
    common = [k for k in by_seed if base is not None and by_seed[k] is not None and base.get(k) is not None]
    return statistics.mean(by_seed[k] - base[k] for k in common) if common else None


class Ledger:
    def __init__(self, path, about, runs_root, metric):
        """metric: the summary key suffix, "mIoU" (final_mIoU) or "top1" (final_top1)."""
        self.path, self.about, self.runs_root = path, about, runs_root
        self.score_key, self.teacher_key = f"final_{metric}", f"teacher_{metric}"

    def key(self, run_dir):
        return os.path.relpath(run_dir, self.runs_root)

    def read(self):
        if not os.path.exists(self.path):
            return {}
        with open(self.path) as f:
            return json.load(f)["runs"]

    @contextlib.contextmanager
    def locked(self):
        """Read-modify-write under a lock: several results processes run side by side."""
        os.makedirs(self.runs_root, exist_ok=True)
        with open(os.path.join(self.runs_root, ".ledger.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            runs = self.read()
            before = json.dumps(runs, sort_keys=True)
            yield runs
            if json.dumps(runs, sort_keys=True) != before:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                with open(self.path + ".tmp", "w") as f:
                    json.dump({"about": self.about, "runs": runs}, f, indent=1, sort_keys=True)
                    f.write("\n")
                os.replace(self.path + ".tmp", self.path)

    def record_divergence(self, run_dir, message, teacher_score=None):
        """A run stopped for a non-finite loss is a result too: result() returns this entry
        (with "diverged": message) instead of None, so it is not trained again."""
        with self.locked() as runs:
            entry = {"diverged": message}
            if teacher_score is not None:
                entry[self.teacher_key] = round(teacher_score, 6)
            runs[self.key(run_dir)] = entry

    def result(self, run_dir, use_ledger=True, teacher_score=None):
        """The run's summary from its directory (recording it), else its recorded entry, else None.
        teacher_score: the final score of the teacher the run must have distilled from."""
        s = summary(run_dir)
        if s is not None:
            with self.locked() as runs:
                entry = {self.score_key: round(s[self.score_key], 6),
                         "train_seconds": round(s["train_seconds"], 1)}
                if teacher_score is not None:
                    entry[self.teacher_key] = round(teacher_score, 6)
                runs[self.key(run_dir)] = entry
            return s
        entry = self.read().get(self.key(run_dir)) if use_ledger else None
        if entry is not None and teacher_score is not None and \
                abs(entry.get(self.teacher_key, -1) - teacher_score) > 5e-5:
            return None
        return entry
