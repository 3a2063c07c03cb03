"""What the driver asks of the model side, on one page, free of torch: `ModelSteps`.

An episode's *row* is the model side's handle on it (`open` makes one; in append/slots decoding it
is the episode's row of one batched cache). The driver tells the model side every read and every
written segment of the episode (`read`, `write`: "" for a wait), starts a model step when the
policy asks for one (`start`), runs every started step a little further with `advance` (one
forward pass; the steps that ended come back, so one long step never holds up the others) and
`close`s the row when the episode is done.

What other code needs to know about a model side it asks the class, never the decoding mode's name
(mode names pick a class in `seqpo.engine` and nowhere else): the capabilities below.

Two kinds of model side implement it: the streaming engine (`seqpo.engine`, one class per decoding
mode) and `CompleterSteps`, around anything that only continues a batch of requests with
`complete(requests)` (a `Generator`, vLLM). A completer whose episodes live on another thread (the
live engines of `seqpo.live_engines`, the server's worker) also takes each request's row and the
row's reads and writes (`read`, `write` on the completer), which it queues for that thread.
"""

from __future__ import annotations

from .requests import Ahead, Completion, Request


class ModelSteps:
    """Runs the model steps of episodes; see the module docstring. (Engines also `fork` a row into
    copies that share what it ran, for GRPO groups: `simulate.run_episodes`; not the driver's call.)"""

    # -- capabilities (class attributes: asked of the class, e.g. `engine_class(mode).keeps_cache`) --
    incremental = False  # reads extend the cache in place, in its own prompt format (look-ahead, write-ahead apply)
    keeps_cache = False  # an episode's computation stays cached between its steps
    reserves_source = False  # each sentence reserves its source positions in advance (`slot`)
    takes_chat_template = False  # its prompts are the SeqPO prompt, which a chat template can wrap
    lookahead = 0  # later reads it may decide in the same pass as a step (0: none; a setting)
    write_ahead = False  # it may run the next read while a segment decodes (a setting)

    # -- episodes ---------------------------------------------------------------------------------
    def open(self, pair, reads: list[str] | None = None, max_source_tokens: int | None = None):
        """A new episode's row. `reads`: its whole source, when known in advance; a live sentence
        gives `max_source_tokens` instead (modes that `reserves_source` need one of them)."""
        raise NotImplementedError

    def read(self, row, chunk: str, last: bool = False) -> None:
        """The episode read `chunk` (`last`: its source ends with it)."""

    def write(self, row, segment: str) -> None:
        """The episode's step wrote `segment` ("" for a wait)."""

    def close(self, row) -> None:
        """The episode is done (or dropped, even mid-step): free its row."""

    # -- steps ------------------------------------------------------------------------------------
    def start(self, row, request: Request, ahead: list[Ahead] | None = None,
              then: list[tuple[str, bool]] | None = None) -> None:
        """Begin a model step for `row`; it runs in the next `advance` calls. `ahead` (later reads,
        look-ahead) and `then` (the reads after this step's, write-ahead) may be used by a model
        side with `lookahead` / `write_ahead`; see `seqpo.engine.early`."""
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        """Some started step has not ended yet."""
        raise NotImplementedError

    def advance(self) -> list[tuple[object, list[Completion | None]]]:
        """Run the started steps a little further; return the rows whose step ended, each with one
        entry per read the step took (its Completion; None where the policy waited there without
        the model: look-ahead). Without `ahead` a step takes one read."""
        raise NotImplementedError

    def generate(self, rows: list, requests: list[Request],
                 ahead: list[list[Ahead]] | None = None) -> list[Completion] | list[list[Completion | None]]:
        """Run one step for each row to its end (`start` each, then `advance` until all are done).
        Without `ahead`: one Completion per row; with it, per row the entries of `advance`."""
        for row, request, later in zip(rows, requests, ahead or [[] for _ in rows]):
            self.start(row, request, later)
        done: dict[int, list[Completion | None]] = {}
        while len(done) < len(rows):
            for row, entries in self.advance():
                done[id(row)] = entries
        return [done[id(row)] if ahead is not None else done[id(row)][-1] for row in rows]


class CompleterSteps(ModelSteps):
    """`ModelSteps` over anything with `complete(requests)`: every started step runs to its end at
    the next `advance`, in one `complete` call.

    A completer whose episodes live on another thread (`live_engines.EngineSet`, the server's
    `worker.WorkerClient`) has rows of its own: give them to `open`; each request is then completed
    with its row, and the row's reads and writes go to the completer (the row's owner releases it)."""

    def __init__(self, completer):
        self.completer = completer
        self._started: list[tuple[object, Request]] = []

    def open(self, pair=None, reads=None, max_source_tokens=None, row=None):
        """An episode's row: the completer's own `row` (a live sentence), else a plain handle."""
        return object() if row is None else row

    @staticmethod
    def _plain(row) -> bool:
        """The row is a plain handle (`open` without a row of the completer's)."""
        return type(row) is object

    def read(self, row, chunk: str, last: bool = False) -> None:
        if not self._plain(row):
            self.completer.read(row, chunk, last)

    def write(self, row, segment: str) -> None:
        if not self._plain(row):
            self.completer.write(row, segment)

    def close(self, row) -> None:
        """Rows of a completer are released by their owner (the session, the cascade)."""

    def start(self, row, request: Request, ahead=None, then=None) -> None:
        self._started.append((row, request))

    @property
    def busy(self) -> bool:
        return bool(self._started)

    def advance(self) -> list[tuple[object, list[Completion | None]]]:
        started, self._started = self._started, []
        rows = [row for row, _ in started]
        requests = [request for _, request in started]
        if all(self._plain(row) for row in rows):
            done = self.completer.complete(requests)
        else:
            done = self.completer.complete(requests, rows)
        return [(row, [completion]) for row, completion in zip(rows, done)]


__all__ = ["Ahead", "CompleterSteps", "ModelSteps"]
