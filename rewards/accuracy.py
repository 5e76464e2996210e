"""TRL reward functions: boxed-answer accuracy, choice-letter accuracy, and a format reward.

TRL calls a reward function as `f(prompts=..., completions=..., completion_ids=..., **columns,
trainer_state=..., log_extra=..., log_metric=...)` and expects one float or None per row.
Completions are strings or conversational message lists. These functions take what they
need by keyword and ignore the rest.

The configurable ones are classes (picklable, unlike closures) whose instances carry a
`__name__`, which TRL uses to name the reward in its logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewards.extract import completion_text, extract_boxed
from rewards.pool import DEFAULT_TIMEOUT_S
from rewards.verifier import verify_batch

DEFAULT_GOLD_COLUMNS = ("answer", "Answer", "solution", "Solution")
CHOICE_GOLD_COLUMNS = ("answer", "Answer")
_ROW_ID_COLUMNS = ("unique_id", "id", "ID", "problem_idx", "idx")


def row_names(n: int, columns: dict[str, Any]) -> list[str]:
    """How warnings name each row: its index, plus a dataset id column when there is one."""
    for column in _ROW_ID_COLUMNS:
        values = columns.get(column)
        if isinstance(values, Sequence) and not isinstance(values, str) and len(values) == n:
            return [f"{i} ({column}={values[i]!r})" for i in range(n)]
    return [str(i) for i in range(n)]


def pick_golds(n: int, columns: dict[str, Any], gold_columns: Sequence[str]) -> list[Any]:
    """Per row, the value of the first of `gold_columns` that is present and not None.

    Raises:
        ValueError: when none of the columns reaches the reward function at all (a dataset
            or config mistake, not a bad row).
    """
    present = [c for c in gold_columns if c in columns and columns[c] is not None]
    if not present:
        raise ValueError(
            f"the reward needs one of the columns {list(gold_columns)} in the dataset; "
            f"it received {sorted(k for k in columns if not k.startswith('log_'))}"
        )
    for column in present:
        if len(columns[column]) != n:
            raise ValueError(f"column {column!r} has {len(columns[column])} rows for {n} completions")
    golds = []
    for i in range(n):
        golds.append(next((columns[c][i] for c in present if columns[c][i] is not None), None))
    return golds


class BoxedAccuracy:
    """Reward 1.0 when the completion's last `\\boxed{}` answer equals the gold answer, else 0.0.

    The gold comes from the first present column of `gold_column` (default: `answer`, else
    `solution`, each also capitalised); a row whose gold holds no usable answer gets None.

    Args:
        gold_column: a column name, or names to try in order.
        kind: "math" (math-verify, strict) or "choice" (letters).
        require_box: False also grades unboxed completions (evaluation only).
        timeout_s: per-completion limit; a timeout scores 0.
        name: the reward's name in TRL's logs (default: derived from the settings).
    """

    def __init__(
        self,
        gold_column: str | Sequence[str] = DEFAULT_GOLD_COLUMNS,
        kind: str = "math",
        require_box: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        name: str | None = None,
    ) -> None:
        self.gold_columns = (gold_column,) if isinstance(gold_column, str) else tuple(gold_column)
        if not self.gold_columns:
            raise ValueError("gold_column must name at least one column")
        self.kind = kind
        self.require_box = require_box
        self.timeout_s = timeout_s
        default = "choice_accuracy" if kind == "choice" else "boxed_accuracy"
        if isinstance(gold_column, str):
            default += f"_{gold_column}"
        self.__name__ = name or default

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        golds = pick_golds(len(texts), kwargs, self.gold_columns)
        return verify_batch(
            texts,
            golds,
            self.kind,
            require_box=self.require_box,
            timeout_s=self.timeout_s,
            row_names=row_names(len(texts), kwargs),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gold_column={self.gold_columns!r}, kind={self.kind!r}, name={self.__name__!r})"


class ChoiceAccuracy(BoxedAccuracy):
    """`BoxedAccuracy` for multiple choice: the boxed letter against the gold letter."""

    def __init__(self, gold_column: str | Sequence[str] = CHOICE_GOLD_COLUMNS, **kwargs: Any) -> None:
        super().__init__(gold_column, kind="choice", **kwargs)


_BOXED_ACCURACY = BoxedAccuracy(name="boxed_accuracy")
_CHOICE_ACCURACY = ChoiceAccuracy(name="choice_accuracy")


def boxed_accuracy(completions: list, **kwargs: Any) -> list[float | None]:
    """1.0 if the last `\\boxed{}` equals the gold of the `answer` (else `solution`) column, else 0.0.

    None for a row whose gold holds no usable answer.
    """
    return _BOXED_ACCURACY(completions, **kwargs)


def choice_accuracy(completions: list, **kwargs: Any) -> list[float | None]:
    """1.0 if the boxed letter equals the `answer` column's letter, else 0.0; None for unusable gold."""
    return _CHOICE_ACCURACY(completions, **kwargs)


def format_reward(completions: list, **kwargs: Any) -> list[float]:
    """1.0 if the completion holds a complete, non-empty `\\boxed{}` answer, else 0.0.

    Linear-time string scanning on a capped tail, so it runs in the caller's process.
    """
    return [1.0 if extract_boxed(completion_text(c)) else 0.0 for c in completions]
