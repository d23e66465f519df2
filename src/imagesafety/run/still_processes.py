"""Still images decoded in worker processes, for long runs: with many small images the interpreter lock, not the CPU,
bounded decoding on threads (each short Pillow call that gives the lock away waited to get it back, beside the model's
thread). A worker reads each still exactly as `read_views` does and sends its views back as plain images; the run
prepares them for the model itself, so no model crosses a process boundary. Animations and videos stay on the
threads, where their frames are prepared one at a time as they are decoded.

The workers are `python -m imagesafety.run.still_processes`, fed pickled batches on a pipe: unlike multiprocessing's
spawn, they never import the user's main script (a script without a `__main__` guard would run again in each).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys

from PIL import Image

from imagesafety.media import FramePolicy, Sampling, ViewInfo, read_views
from imagesafety.media.policy import failure_line
from imagesafety.media.video import looks_like_video

#: larger stills stay on the threads: their decoding gives the lock away for long stretches, and their pixels would
#: cross the pipe whole before they are prepared
MAX_STILL_PIXELS = 1 << 20
#: a still's views, an error row's message, or None for a file the threads read (an animation, a video, a large still)
Decoded = tuple[Sampling, list[tuple[Image.Image, ViewInfo]]] | str | None


def read_stills(files: list[tuple[bytes, str]], policy: FramePolicy, max_pixels: int) -> list[Decoded]:
    """Each (bytes, name)'s still views, or its error row's message (`failure_line`, as on the threads)."""
    out: list[Decoded] = []
    for data, name in files:
        try:
            if looks_like_video(data):
                out.append(None)
                continue
            sampling, views = read_views(data, policy, max_pixels, name)
            if sampling.kind != "still" or sampling.width * sampling.height > MAX_STILL_PIXELS:
                out.append(None)
                continue
            # plain images: a decoder's own class (PngImageFile) does not survive pickling whole
            out.append((sampling, [(image.copy(), info) for image, info in views]))
        except Exception as exc:  # as on the threads: one file's failure is its own error row
            out.append(failure_line(name, exc))
    return out


#: how many still-decoding processes a long run starts (0: none, every image on the threads)
PROCESSES_VARIABLE = "IMAGESAFETY_DECODE_PROCESSES"


def default_processes() -> int:
    """$IMAGESAFETY_DECODE_PROCESSES, else as many as decoding threads (`default_workers`)."""
    from imagesafety.data.decoding import default_workers

    value = os.environ.get(PROCESSES_VARIABLE, "").strip()
    if not value:
        return default_workers()
    if not value.isdigit():
        raise ValueError(f"{PROCESSES_VARIABLE}={value!r}: give a number of processes, 0 for none")
    return int(value)


class StillDecoders:
    """`processes` worker processes, started once a run has had `after` images to decode (a short run never pays
    their start) and stopped with the run. A worker that fails hands its batches back to the threads for the rest of
    the run."""

    def __init__(self, processes: int, after: int):
        self.processes, self.after, self.seen = processes, after, 0
        self.workers: list[subprocess.Popen] = []
        self.broken = False

    def ready(self, images: int) -> bool:
        """Whether the workers take the next batch, `images` more having come (starting them when it is time)."""
        if self.broken or self.processes <= 0:
            return False
        if not self.workers:
            self.seen += images
            if self.seen < self.after:
                return False
            try:
                self.workers = [
                    subprocess.Popen(
                        [sys.executable, "-m", "imagesafety.run.still_processes"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                    )
                    for _ in range(self.processes)
                ]
            except OSError:  # no interpreter to start (an embedded Python): the threads do it all
                self.broken = True
                self.close()
                return False
        return True

    def decode(self, parts: list[list[tuple[bytes, str]]], policy: FramePolicy, max_pixels: int):
        """Each part's `read_stills` on its own worker (at most one part per worker), or None if a worker failed."""
        try:
            for worker, part in zip(self.workers, parts):
                pickle.dump((part, policy, max_pixels), worker.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                worker.stdin.flush()
            return [pickle.load(worker.stdout) for worker, _ in zip(self.workers, parts)]
        except (OSError, EOFError, pickle.UnpicklingError):
            self.broken = True  # its batches go back to the threads; the others are stopped
            self.close()
            return None

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.stdin.close()  # end of input: the worker exits
                worker.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                worker.kill()
        self.workers = []

    def __enter__(self) -> StillDecoders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    """A worker: read (files, policy, max_pixels) requests from stdin until it closes, answer each on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's: it stops the workers by closing their input
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the answers
    requests = sys.stdin.buffer
    while True:
        try:
            files, policy, max_pixels = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(read_stills(files, policy, max_pixels), answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


if __name__ == "__main__":
    main()
