"""How a trial's training entrypoint is run: `local` runs it as a subprocess here.

Every runner executes the same `airloop train --request ... --result ...` command (the
`docker` runner, in `airloop.training.docker_runner`, runs it in the trainer image), so a
model trained locally and one trained in production go through the same code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from airloop.training.train import TrainResult


def train_command(request_path: Path, result_path: Path) -> list[str]:
    return ["airloop", "train", "--request", str(request_path), "--result", str(result_path)]


def run_local(request_path: Path, result_path: Path) -> TrainResult:
    """Run training in a fresh process; raise with the tail of its output if it fails."""
    result_path.unlink(missing_ok=True)
    # The console script of this interpreter's environment, not whatever is first on PATH.
    command = [sys.executable, "-m", "airloop.cli", *train_command(request_path, result_path)[1:]]
    done = subprocess.run(command, capture_output=True, text=True)
    result_path.with_name("train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"training process exited with {done.returncode}:\n{tail}")
    return TrainResult.read(result_path)
