"""A person decides a METI conflict in Airflow: withdraw our source, or keep both and wait.

``MetiConflictReviewOperator`` is a human-in-the-loop branch (Airflow 3.1 and newer): when it
runs it reads the source and every partner METI lists in ``conflict_with``, asks one question
in Airflow's *Required Actions* page (or through the REST API), and follows the downstream
task mapped to the answer. On older Airflow lines the module imports, but building the
operator raises an error naming the version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow_provider_meti._compat import (
    AIRFLOW_VERSION,
    HITL_AVAILABLE,
    AirflowFailException,
    Context,
    HITLBranchOperator,
)
from airflow_provider_meti.conditions import in_conflict
from airflow_provider_meti.exceptions import MetiNotFoundError
from airflow_provider_meti.hooks.meti import MetiHook, MetiHookMixin
from airflow_provider_meti.replies import conflict_with_of

__all__ = [
    "HITL_AVAILABLE",
    "HITL_UNAVAILABLE_REASON",
    "MetiConflictReviewOperator",
    "render_review_body",
]

HITL_UNAVAILABLE_REASON = (
    ""
    if HITL_AVAILABLE
    else f"Airflow {AIRFLOW_VERSION} has no human-in-the-loop operators (they came with 3.1)"
)
"""Why ``MetiConflictReviewOperator`` cannot run here; empty where it can."""

WITHDRAW = "Withdraw ours"
WAIT = "Keep both and wait"
FAIL = "Fail the run"
DEFAULT_RESPONSE_TIMEOUT = timedelta(days=7)
# A source overlapping dozens of others is a data problem, not something to read row by row.
DEFAULT_MAX_PARTNERS = 20


@dataclass(frozen=True)
class ReviewedSource:
    """What the question shows of one source; ``source`` is None when it cannot be read.

    ``unreadable`` marks a partner METI names but our token cannot read (404): on API v2, a
    source of another account.
    """

    source_id: str
    source: dict[str, Any] | None
    unreadable: bool = False


class MetiConflictReviewOperator(MetiHookMixin, HITLBranchOperator):
    """Asks a person how to settle a METI conflict, then follows the matching branch.

    At run time it reads the source ``source_id`` and its conflicting partners from METI and
    asks one question whose Markdown body shows, for ours and for each partner: ``alt_id``,
    METI id, validity window, hectares and ``percent_overlap``. The answer picks a downstream
    task: ``withdraw_task_id`` (usually a ``MetiDeleteSourceOperator``) or ``wait_task_id``
    (usually a ``MetiSourceSensor`` with ``wait_for="resolved"``); every other direct
    downstream task is skipped. "Fail the run" (with ``allow_fail``) fails this task without
    retries. Task ids inside a task group may be given with or without the group's prefix.

    When the source is already gone or no longer in conflict, nobody is asked: the wait
    branch is followed (its sensor then returns at once).

    Works with dynamic task mapping: ``MetiConflictReviewOperator.partial(...)
    .expand(source_id=...)`` asks one question per source; map the downstream tasks over the
    same list, so that answer *i* decides task *i*.

    :param source_id: the METI id (``src_...``) of our source in conflict
    :param withdraw_task_id: the task to follow on "Withdraw ours"
    :param wait_task_id: the task to follow on "Keep both and wait"
    :param allow_fail: also offer "Fail the run"
    :param default_option: the answer taken when nobody answers within ``response_timeout``;
        None fails the task on timeout instead
    :param response_timeout: how long to wait for an answer (default 7 days; None: forever)
    :param subject: the question's headline (default: names the source); templated
    :param body: Markdown shown above the generated details; templated
    :param max_partners: at most this many partners are read and shown
    :param meti_conn_id: the Airflow connection id
    :param kwargs: passed on to ``HITLBranchOperator``, e.g. ``assigned_users`` and
        ``notifiers``
    """

    template_fields: Sequence[str] = ("source_id", "subject", "body", "meti_conn_id")

    WITHDRAW = WITHDRAW
    WAIT = WAIT
    FAIL = FAIL

    def __init__(
        self,
        *,
        source_id: str,
        withdraw_task_id: str,
        wait_task_id: str,
        allow_fail: bool = False,
        default_option: str | None = WAIT,
        response_timeout: timedelta | None = DEFAULT_RESPONSE_TIMEOUT,
        subject: str = "",
        body: str | None = None,
        max_partners: int = DEFAULT_MAX_PARTNERS,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        options = [WITHDRAW, WAIT, FAIL] if allow_fail else [WITHDRAW, WAIT]
        super().__init__(
            subject=subject,
            body=body,
            options=options,
            defaults=default_option,
            multiple=False,
            response_timeout=response_timeout,
            options_mapping={WITHDRAW: withdraw_task_id, WAIT: wait_task_id},
            **kwargs,
        )
        self.source_id = source_id
        self.withdraw_task_id = withdraw_task_id
        self.wait_task_id = wait_task_id
        self.allow_fail = allow_fail
        self.max_partners = max_partners
        self.meti_conn_id = meti_conn_id

    def execute(self, context: Context) -> Any:
        """Read the conflict from METI and ask; or follow the wait branch if it is settled."""
        ours = self._read(self.source_id)
        if ours.source is None or not in_conflict(ours.source):
            state = "is gone" if ours.source is None else "is no longer in conflict"
            self.log.info("Source %s %s: nobody needs to decide", self.source_id, state)
            return self.do_branch(context, self.wait_task_id)
        partner_ids = conflict_with_of(ours.source)
        partners = [
            self._read(partner_id, partner=True) for partner_id in partner_ids[: self.max_partners]
        ]
        alt_id = ours.source.get("alt_id") or self.source_id
        self.subject = self.subject or f"METI conflict: {alt_id} ({self.source_id})"
        details = render_review_body(
            ours,
            partners,
            options=self.options,
            default_option=self.defaults[0] if self.defaults else None,
            unshown=len(partner_ids) - len(partners),
        )
        self.body = f"{self.body}\n\n{details}" if self.body else details
        self.log.info("Asking whether to withdraw %s (%s)", alt_id, self.source_id)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Act on the answer (or the default on timeout): branch, or fail on "Fail the run"."""
        # The grandparent checks and records the answer; the branch is taken below, once
        # "Fail the run" is ruled out.
        answer = super(HITLBranchOperator, self).execute_complete(context=context, event=event)
        (chosen,) = answer["chosen_options"]
        who = (answer.get("responded_by_user") or {}).get("name") or "nobody (timeout default)"
        self.log.info("Source %s: %s chose %r", self.source_id, who, chosen)
        if chosen == FAIL:
            raise AirflowFailException(
                f"The reviewer chose {FAIL!r} for the METI conflict of source {self.source_id}."
            )
        return self.do_branch(context, self.options_mapping[chosen])

    def do_branch(self, context: Context, branches_to_execute: Any) -> Any:
        """Branch, after qualifying bare task ids with this task's group prefix."""
        if isinstance(branches_to_execute, str):
            branches_to_execute = self._qualified(branches_to_execute)
        return super().do_branch(context, branches_to_execute)

    def _qualified(self, task_id: str) -> str:
        group = self.task_group
        if self.dag is None or task_id in self.dag.task_dict or group is None:
            return task_id
        return str(group.child_id(task_id))

    def _read(self, source_id: str, *, partner: bool = False) -> ReviewedSource:
        try:
            return ReviewedSource(source_id, self.hook.get_source(source_id))
        except MetiNotFoundError:
            # A partner METI still names in conflict_with exists: a 404 means (API v2) a
            # source of another account, which our token cannot read. Ours is simply gone.
            return ReviewedSource(source_id, None, unreadable=partner)


def render_review_body(
    ours: ReviewedSource,
    partners: Sequence[ReviewedSource],
    *,
    options: Sequence[str],
    default_option: str | None,
    unshown: int = 0,
) -> str:
    """The question's Markdown: a table of both sides, then what each answer does.

    Only source fields read from METI appear here, never anything from the connection.

    :param ours: our source, the one a "Withdraw ours" answer deletes
    :param partners: the sources METI says it conflicts with
    :param options: the answers offered
    :param default_option: the answer taken on timeout (None: the task fails)
    :param unshown: partners left out of the table
    """
    alt_id = _text((ours.source or {}).get("alt_id") or ours.source_id)
    count = len(partners) + unshown
    lines = [
        f"Our source **{alt_id}** ({_code(ours.source_id)}) overlaps {count} other "
        f"source{'s' if count != 1 else ''} in METI during overlapping validity windows.",
        "",
        "| | alt_id | METI id | valid from | valid until | hectares | overlap |",
        "|---|---|---|---|---|---|---|",
        _row("**ours**", ours),
        *(_row("other", partner) for partner in partners),
    ]
    if unshown:
        lines.append(f"| … | {unshown} more not shown | | | | | |")
    lines += [
        "",
        "*Overlap*: the share of that source's area its conflicting neighbours cover.",
        "",
    ]
    effects = {
        WITHDRAW: f"delete **{alt_id}** ({_code(ours.source_id)}) from METI; the others stay.",
        WAIT: "change nothing in METI and wait until the conflict is resolved there "
        "(for example through METI's conflict request form).",
        FAIL: "fail this run without changing anything in METI.",
    }
    lines += [f"- **{option}**: {effects[option]}" for option in options if option in effects]
    lines.append("")
    if default_option:
        lines.append(f"Without an answer before the deadline: **{default_option}**.")
    else:
        lines.append("Without an answer before the deadline, this task fails.")
    return "\n".join(lines)


def _row(role: str, reviewed: ReviewedSource) -> str:
    source = reviewed.source
    if source is None:
        what = "a source of another account" if reviewed.unreadable else "(deleted)"
        cells = [what, _code(reviewed.source_id)]
        return "| " + " | ".join([role, *cells, "", "", "", ""]) + " |"
    cells = [
        role,
        _text(source.get("alt_id") or "—"),
        _code(source.get("id") or reviewed.source_id),
        _text(source.get("start_at") or "—"),
        _text(source.get("end_at") or "—"),
        _number(source.get("hectares"), "{:,.2f}"),
        _percent(source.get("percent_overlap")),
    ]
    return "| " + " | ".join(cells) + " |"


def _text(value: Any) -> str:
    # A value from METI must not break the table or inject Markdown of its own.
    text = " ".join(str(value).split())
    for special in ("\\", "|", "`", "*", "_", "[", "]", "<", ">"):
        text = text.replace(special, "\\" + special)
    return text


def _code(value: Any) -> str:
    # Backslash escapes do not work inside a code span; only the table's pipe needs one.
    text = " ".join(str(value).split()).replace("`", "'").replace("|", "\\|")
    return f"`{text}`"


def _number(value: Any, pattern: str) -> str:
    try:
        return pattern.format(float(value))
    except (TypeError, ValueError):
        return "—"


def _percent(value: Any) -> str:
    try:
        return f"{100 * float(value):.1f} %"
    except (TypeError, ValueError):
        return "—"
