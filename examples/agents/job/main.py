"""A minimal agent job: reads its input, prints progress, writes result.json and reports/."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    input_file = os.environ.get("NULLSPACE_INPUT_FILE")
    payload = json.loads(Path(input_file).read_text()) if input_file else {}
    topic = str(payload.get("topic", "nothing in particular"))
    print(f"job started: topic={topic}", flush=True)
    words = topic.split()
    print(f"counted {len(words)} word(s)", flush=True)
    if payload.get("fail"):
        print("failing on purpose (input.fail is set)", file=sys.stderr, flush=True)
        return 3
    Path("result.json").write_text(json.dumps({"topic": topic, "words": len(words)}) + "\n")
    reports = Path("reports")
    reports.mkdir(exist_ok=True)
    (reports / "summary.md").write_text(f"# Summary\n\nTopic: {topic}\nWords: {len(words)}\n")
    print("job finished: wrote result.json and reports/summary.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
