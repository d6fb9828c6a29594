"""Jupyter messages as the client's events (console/code_interpreter/messages.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from console.code_interpreter.messages import StreamLines, Summary, event_for


def msg(kind: str, content: dict, **header) -> dict:
    return {
        "msg_type": kind,
        "content": content,
        "header": {"date": datetime(2026, 1, 1, tzinfo=UTC), **header},
    }


def out(kind: str, text: str) -> dict:
    return {"type": kind, "text": text, "timestamp": 1}


def test_results_errors_and_counts():
    result = event_for(
        msg(
            "execute_result",
            {"data": {"text/plain": "42", "text/html": "<b>42</b>", "image/png": "iVBO\n",
                      "application/vnd.custom": {"a": 1}}},
        )
    )  # fmt: skip
    assert result == {
        "type": "result",
        "is_main_result": True,
        "text": "42",
        "html": "<b>42</b>",
        "png": "iVBO",
        "data": {"application/vnd.custom": {"a": 1}},
    }
    shown = event_for(msg("display_data", {"data": {"text/plain": "<Figure>"}}))
    assert shown is not None and shown["is_main_result"] is False
    error = event_for(
        msg(
            "error",
            {"ename": "NameError", "evalue": "x", "traceback": ["\x1b[31mNameError\x1b[0m", "x"]},
        )
    )
    assert error == {
        "type": "error",
        "name": "NameError",
        "value": "x",
        "traceback": "NameError\nx",
    }
    count = event_for(msg("execute_input", {"execution_count": 3, "code": "1"}))
    assert count == {"type": "number_of_executions", "execution_count": 3}
    stream = event_for(msg("stream", {"name": "stderr", "text": "w\n"}))
    assert stream == {"type": "stderr", "text": "w\n", "timestamp": 1767225600000}
    assert event_for(msg("status", {"execution_state": "idle"})) is None


def test_stream_lines_join_split_prints_and_keep_order():
    lines = StreamLines()
    assert lines.feed(out("stdout", "1")) == []
    assert lines.feed(out("stdout", "\n")) == [out("stdout", "1\n")]
    assert lines.feed(out("stdout", "a\nb\npartial")) == [
        out("stdout", "a\n"),
        out("stdout", "b\n"),
    ]
    # Another stream's output first hands on what was pending, so the order holds.
    assert lines.feed(out("stderr", "err\n")) == [out("stdout", "partial"), out("stderr", "err\n")]
    assert lines.feed(out("stdout", "end")) == []
    assert lines.flush() == [out("stdout", "end")]
    assert lines.flush() == []


def test_summary_is_the_clients_execution():
    summary = Summary()
    for event in [
        {"type": "number_of_executions", "execution_count": 2},
        out("stdout", "hi\n"),
        {"type": "result", "text": "1", "is_main_result": True},
        {"type": "error", "name": "E", "value": "v", "traceback": "t"},
        {"type": "artifact", "artifact": {"id": "art_1"}},
    ]:
        summary.add(event)
    assert summary.as_dict() == {
        "results": [{"text": "1", "is_main_result": True}],
        "artifacts": [{"id": "art_1"}],
        "logs": {"stdout": ["hi\n"], "stderr": []},
        "error": {"name": "E", "value": "v", "traceback": "t"},
        "execution_count": 2,
    }
