"""`make bench BENCH_FLAGS=--profile`: py-spy samples every hot Herald process during the SMS scenario.

One ``py-spy record --format raw --function --nonblocking`` per process (it reads the process's memory
without pausing it; its own CPU is not charged to the process) writes collapsed stacks, stopped with
SIGINT when the scenario ends. From those stacks this module draws each flame graph (bench/flame.py)
and prints the 15 functions with the most own time (leaf frames: where the interpreter was when
sampled; time in a C extension such as orjson or pydantic-core is charged to the Python function
that called it) and each library's inclusive share, both also as CPU ms per message when the
process's CPU per message over the same window is known.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.flame import flame_svg

HOT = ("gateway", "router", "sender", "tracker")
IDLE_SAMPLES = 50  # fewer active samples than this, or less CPU per message: idle in the scenario
IDLE_MS = 0.05
PROFILED = ("sms", "sms run 1")  # the channels phase's SMS scenario and the first repeated 20,000-SMS run
# The frames every sample starts with (interpreter start, the CLI, the event loop's run): left out of
# the inclusive shares, where they would be 100 % everywhere.
BASE = {"<frozen runpy>", "herald_cli/__main__", "herald_cli/main", "herald_common/service", "uvloop"}
BASE_FUNCS = ("Runner.run ", "run ")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def package(file: str) -> str:
    """A frame's library: py-spy names files relative to their sys.path entry, so the first component
    (herald_* code by its first two: herald_common/intake)."""
    parts = file.strip("/").split("/")
    top = "/".join(parts[:2]) if parts[0].startswith("herald_") and len(parts) > 1 else parts[0]
    return top.removesuffix(".py") or "?"


def short(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match.group('func')} ({match.group('file')})" if match else frame


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    if not path.exists():
        return stacks
    for line in path.read_text(errors="replace").splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            stacks.append((head.split(";"), int(count)))
    return stacks


@dataclass
class Profile:
    """What one process's samples say."""

    name: str
    samples: int
    own: list[tuple[str, int]]  # function, samples as leaf; busiest first
    libraries: list[tuple[str, int]]  # library, samples with any of its frames on the stack
    svg: Path
    raw: Path
    cpu_ms: float | None = None  # the process's CPU ms per message over the same window

    def ms(self, count: int) -> str:
        share = count / max(1, self.samples)
        return f"{100 * share:5.1f}%" + (f" {share * self.cpu_ms:6.3f} ms" if self.cpu_ms else "")

    def text(self, top: int = 15) -> str:
        per = f", {self.cpu_ms:.2f} CPU ms per message" if self.cpu_ms else ""
        lines = [f"  {self.name}: {self.samples} samples{per}; flame graph {self.svg}"]
        if self.samples < IDLE_SAMPLES or (self.cpu_ms is not None and self.cpu_ms < IDLE_MS):
            return lines[0] + " (idle)"
        lines.append("    own time (leaf frames)")
        lines += [f"      {self.ms(n)}  {func}" for func, n in self.own[:top]]
        lines.append("    inclusive, by library")
        lines += [f"      {self.ms(n)}  {lib}" for lib, n in self.libraries[:12]]
        return "\n".join(lines)


def analyse(name: str, raw: Path, svg: Path) -> Profile:
    stacks = read_raw(raw)
    own: Counter[str] = Counter()
    libs: Counter[str] = Counter()
    for frames, count in stacks:
        own[short(frames[-1])] += count
        files = [m.group("file") if (m := _FRAME.match(f)) else f for f in frames]
        start = 0
        while start < len(frames) - 1 and (
            package(files[start]) in BASE or frames[start].startswith(BASE_FUNCS)
        ):
            start += 1
        for lib in {package(file) for file in files[start:]}:
            libs[lib] += count
    svg.write_text(flame_svg(f"{name} — {sum(own.values())} samples", stacks, package))
    return Profile(name, sum(own.values()), own.most_common(), libs.most_common(), svg, raw)


@dataclass
class Profiler:
    """py-spy on each hot process between start() and stop()."""

    out: Path
    rate: int = 100
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)
    where: Path | None = None

    def start(self, label: str, pids: dict[str, int]) -> None:
        exe = py_spy()
        if exe is None:
            print("  (py-spy is not installed: pip install py-spy; no profile)")
            return
        self.where = self.out / re.sub(r"\W+", "-", label)
        self.where.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            if not name.startswith(HOT):
                continue
            raw = self.where / f"{name}.txt"
            argv = [exe, "record", "--pid", str(pid), "--rate", str(self.rate), "--nonblocking"]
            argv += ["--function", "--format", "raw", "-o", str(raw)]
            log = (self.where / f"{name}.py-spy.log").open("wb")
            self.running[name] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), raw)

    def stop(self, cpu_ms: dict[str, float]) -> list[Profile]:
        for proc, _ in self.running.values():
            proc.send_signal(signal.SIGINT)
        profiles = []
        for name, (proc, raw) in self.running.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            profile = analyse(name, raw, raw.with_suffix(".svg"))
            profile.cpu_ms = cpu_ms.get(name)
            profiles.append(profile)
        self.running.clear()
        return sorted(profiles, key=lambda p: -(p.cpu_ms or 0))


def under(stacks: list[tuple[list[str], int]], needle: str) -> Counter[str]:
    """Samples by the frame called from the first frame containing ``needle`` ("(self)": its own)."""
    children: Counter[str] = Counter()
    for frames, count in stacks:
        for i, frame in enumerate(frames):
            if needle in frame:
                children[short(frames[i + 1]) if i + 1 < len(frames) else "(self)"] += count
                break
    return children


def main() -> None:
    """Summarise recorded profiles again: ``python -m bench.profile var/bench/profile/sms/*.txt``;
    ``--under 'Sender.handle ('`` splits the samples under a function by what it called."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("raw", nargs="+", type=Path, help="collapsed stacks written by --profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--under", help="a function (substring of its frame) to split by callee")
    args = parser.parse_args()
    for raw in args.raw:
        if args.under:
            stacks = read_raw(raw)
            total = max(1, sum(n for _, n in stacks))
            print(f"{raw}: under {args.under!r}, share of all {total} samples")
            for frame, n in under(stacks, args.under).most_common(args.top):
                print(f"  {100 * n / total:5.1f}%  {frame}")
        else:
            print(analyse(raw.stem, raw, raw.with_suffix(".svg")).text(args.top))


if __name__ == "__main__":
    main()
