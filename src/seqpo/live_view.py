"""Terminal view for `seqpo translate`: the source arriving read by read, the translation growing
under it, and finished sentences with their lag (rich Live)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .stream import chunk_source, count_units, join_reads


class LiveView:
    def __init__(self, pair, policy_settings: dict, console: Console | None = None):
        self.pair, self.policy = pair, policy_settings
        self.console = console or Console()
        self.history = Table(show_header=True, header_style="bold", expand=True)
        self.history.add_column("source")
        self.history.add_column("translation")
        self.history.add_column("AL", justify="right")
        self.history.add_column("waits", justify="right")
        self.source, self.read, self.target, self.last = "", 0, "", ""
        self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.update(self._render(final=True))
        return self.live.__exit__(*exc)

    def start(self, source: str, chunk: int) -> None:
        self.source, self.read, self.target, self.last = source, 0, "", "reading..."
        self.reads = chunk_source(source, self.pair.source_unit, chunk)
        self.live.update(self._render())

    def grow(self, source: str) -> None:
        """Speech input: the source is only known as it is recognised."""
        self.source = source.strip()
        self.reads = chunk_source(self.source, self.pair.source_unit, 1)

    def update(self, episode, step) -> None:
        self.read = step.read
        self.target = episode.prediction
        self.last = f"write: {step.written}" if step.written else \
            "re-translated" if step.display is not None else "wait"
        self.live.update(self._render())

    def finish(self, episode, done: dict) -> None:
        al = f"{done['AL']:.2f}" if done.get("AL") is not None else "-"
        self.history.add_row(episode.source, episode.prediction, al, f"{episode.wait_fraction:.0%}")
        self.source = ""
        self.live.update(self._render())

    def _render(self, final: bool = False):
        title = f"seqpo {self.pair} · " + " ".join(f"{k}={v}" for k, v in self.policy.items())
        parts = [self.history]
        if self.source and not final:
            unit = self.pair.source_unit
            seen, n = [], 0
            for r in self.reads:
                if n + count_units(r, unit) > self.read:
                    break
                seen.append(r)
                n += count_units(r, unit)
            seen_text = join_reads(seen, unit)
            rest = self.source[len(seen_text):] if self.source.startswith(seen_text) else ""
            src = Text.assemble((seen_text, "bold"), (rest, "dim"))
            parts.append(Panel(Group(Text.assemble(("source  ", "cyan"), src),
                                     Text.assemble(("target  ", "green"), (self.target, "bold green")),
                                     Text(self.last, style="italic dim")),
                               title=f"read {self.read}/{count_units(self.source, unit)} {unit}s"))
        return Panel(Group(*parts), title=title)
