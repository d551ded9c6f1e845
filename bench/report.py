"""What one `make bench` run measured, kept as it runs and written as var/bench/report.html: throughput
and latency over time per scenario (inline SVG, no script or stylesheet from elsewhere), CPU ms per
message per process beside the reference's, the repeatability runs, the profiles and the printed text."""

from __future__ import annotations

import io
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bench.charts import line_chart

if TYPE_CHECKING:
    from bench.profile import Profile, Profiler
    from bench.stack import Arrivals

BUCKET_S = 0.5  # at least; longer runs get longer buckets (about 80 points a chart)
NOT_HERALD = ("kafka", "redis", "bench+peers")


def services_ms(cpu: dict[str, float]) -> float:
    """CPU ms per message of Herald's own processes: broker, Valkey, peers and load generator excluded."""
    return sum(v for k, v in cpu.items() if k not in NOT_HERALD)


@dataclass
class Scenario:
    label: str
    n: int
    delivered: int
    rate: float
    cpu: dict[str, float]  # process → CPU ms per message
    series: list[tuple[float, float, float, float]]  # seconds since the first 202, msg/s, p50 ms, p99 ms
    broker_mb: float = float("nan")


@dataclass
class Repeat:
    run: int
    rate: float
    cpu: dict[str, float]
    broker_mb: float


class _Tee(io.TextIOBase):
    def __init__(self, out: TextIO, copy: io.StringIO) -> None:
        self.out, self.copy = out, copy

    def write(self, s: str) -> int:
        self.copy.write(s)
        return self.out.write(s)

    def flush(self) -> None:
        self.out.flush()


def _series(arrivals: Arrivals, accepted: dict[int, float]) -> list[tuple[float, float, float, float]]:
    if not accepted or not arrivals.seen:
        return []
    t0 = min(accepted.values())
    width = max(BUCKET_S, round((max(arrivals.seen.values()) - t0) / 80 * 2) / 2)
    buckets: dict[int, list[float]] = {}
    for i, seen in arrivals.seen.items():
        if i in accepted:
            buckets.setdefault(int((seen - t0) / width), []).append((seen - accepted[i]) * 1000)
    out = []
    for b in range(max(buckets) + 1):
        lat = sorted(buckets.get(b, []))
        p50 = lat[len(lat) // 2] if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
        out.append(((b + 1) * width, len(lat) / width, p50, p99))
    return out


@dataclass
class Report:
    scenarios: list[Scenario] = field(default_factory=list)
    references: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind → (msg/s, CPU ms/msg)
    repeats: dict[str, list[Repeat]] = field(default_factory=dict)  # "without reset" / "with reset"
    profiles: dict[str, list[Profile]] = field(default_factory=dict)  # scenario → one per process
    profiler: Profiler | None = None
    text: io.StringIO = field(default_factory=io.StringIO)
    started: float = field(default_factory=time.time)

    def capture_stdout(self) -> None:
        sys.stdout = _Tee(sys.stdout, self.text)

    def scenario(
        self, label: str, arrivals: Arrivals, accepted: dict[int, float], n: int, cpu: dict[str, float]
    ) -> Scenario:
        s = Scenario(label, n, len(arrivals.seen), arrivals.rate(), cpu, _series(arrivals, accepted))
        self.scenarios.append(s)
        return s

    def figure(self, label: str, n: int, rate: float, cpu: dict[str, float]) -> None:
        """A scenario measured without per-message arrivals (intake, campaign): its CPU column only."""
        self.scenarios.append(Scenario(label, n, n, rate, cpu, []))

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(path.parent))
        return path

    def _cpu_table(self) -> str:
        procs: list[str] = []
        for s in self.scenarios:
            procs += [p for p in s.cpu if p not in procs]

        def row(title: str, cell: Callable[[Scenario], str | None], bold: bool = False) -> str:
            cells = "".join(f"<td>{'<b>' * bold}{cell(s) or ''}{'</b>' * bold}</td>" for s in self.scenarios)
            return f"<tr><th>{escape(title)}</th>{cells}</tr>"

        def ref(i: int, fmt: str) -> Callable[[Scenario], str | None]:
            return lambda s: format(self.references[s.label][i], fmt) if s.label in self.references else None

        def cpu(p: str) -> Callable[[Scenario], str | None]:
            return lambda s: f"{s.cpu[p]:.3f}" if p in s.cpu else None

        rows = [row(p, cpu(p)) for p in procs]
        rows += [
            row(
                "Herald services (broker, Valkey, peers excluded)",
                lambda s: f"{services_ms(s.cpu):.3f}",
                True,
            ),
            row("bare asyncio reference (its sending, start-up left out)", ref(1, ".3f")),
            row("delivered msg/s", lambda s: f"{s.rate:.0f}"),
            row("reference msg/s", ref(0, ".0f")),
            row("broker RSS after, MB", lambda s: None if math.isnan(s.broker_mb) else f"{s.broker_mb:.0f}"),
        ]
        head = "".join(f"<th>{escape(s.label)}</th>" for s in self.scenarios)
        return f"<table><tr><th>CPU ms per message</th>{head}</tr>{''.join(rows)}</table>"

    def _repeat_tables(self) -> str:
        out = []
        for mode, runs in self.repeats.items():
            if not runs:
                continue
            procs = [p for p in runs[0].cpu if p not in ("bench+peers",)]
            head = "".join(f"<th>{escape(p)}</th>" for p in procs)
            rows = [
                f"<tr><td>{r.run}</td><td>{r.rate:.0f}</td><td>{r.broker_mb:.0f}</td>"
                + "".join(f"<td>{r.cpu.get(p, 0):.3f}</td>" for p in procs)
                + "</tr>"
                for r in runs
            ]
            ratio = runs[-1].rate / runs[0].rate if runs[0].rate else float("nan")
            out.append(
                f"<h3>SMS, {escape(mode)}: last/first rate {ratio:.2f} (bar ≥ 0.90)</h3>"
                f"<table><tr><th>run</th><th>msg/s</th><th>broker RSS MB</th>{head}</tr>"
                f"{''.join(rows)}</table>"
            )
        return "".join(out)

    def _profiles(self, where: Path) -> str:
        out = []
        for label, profiles in self.profiles.items():
            out.append(f"<h3>{escape(label)}</h3>")
            out += [self._profile(p, where) for p in profiles]
        return "".join(out)

    def _profile(self, p: Profile, where: Path) -> str:
        rel = os.path.relpath(p.svg, where)
        rows = "".join(
            f"<tr><td>{100 * n / max(1, p.samples):.1f}%</td>"
            + (f"<td>{n / max(1, p.samples) * p.cpu_ms:.3f}</td>" if p.cpu_ms else "<td></td>")
            + f"<td><code>{escape(f)}</code></td></tr>"
            for f, n in p.own[:15]
        )
        libs = ", ".join(f"{escape(lib)} {100 * n / max(1, p.samples):.0f}%" for lib, n in p.libraries[:12])
        cpu = f"{p.cpu_ms:.3f} CPU ms per message, " if p.cpu_ms else ""
        return (
            f'<h4>{escape(p.name)} — <a href="{escape(rel)}">flame graph</a></h4>'
            f"<p>{cpu}{p.samples} samples. Inclusive by library: {libs}</p>"
            f"<table><tr><th>own</th><th>ms/msg</th><th>function</th></tr>{rows}</table>"
        )

    def html(self, where: Path) -> str:
        charts = []
        for s in (s for s in self.scenarios if s.series):
            xs = [t for t, *_ in s.series]
            charts.append(
                f"<h3>{escape(s.label)}: {s.delivered}/{s.n} delivered, {s.rate:.0f} msg/s</h3>"
                "<div class=row>"
                + line_chart("delivered msg/s", xs, {"msg/s": [r for _, r, _, _ in s.series]})
                + line_chart(
                    "accept→peer latency ms",
                    xs,
                    {"p50": [p for *_, p, _ in s.series], "p99": [p for *_, p in s.series]},
                )
                + "</div>"
            )
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        return (
            "<!doctype html><html><head><meta charset=utf-8><title>Herald bench</title><style>"
            "body{font:14px system-ui,sans-serif;margin:2em;max-width:1500px}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
            "th{background:#f4f4f4}.row{display:flex;gap:1em;flex-wrap:wrap}pre{background:#f8f8f8;padding:1em}"
            "</style></head><body>"
            f"<h1>Herald bench, {when}</h1><p>{os.cpu_count()} cores; load average at the end {load}. "
            "Every process (broker, Valkey, services, peers, load generator) shares these cores: compare "
            "ratios, not absolute numbers.</p>"
            f"<h2>CPU per message, by process</h2>{self._cpu_table()}"
            f"<h2>Throughput and latency over time (buckets of {BUCKET_S}s or more, from the first 202)</h2>"
            f"{''.join(charts)}<h2>Repeatability</h2>{self._repeat_tables() or '<p>not run</p>'}"
            "<h2>Profiles (py-spy, SMS scenarios)</h2>"
            f"{self._profiles(where) or '<p>not recorded: --profile</p>'}"
            f"<h2>Output</h2><pre>{escape(self.text.getvalue())}</pre></body></html>"
        )


REPORT = Report()
