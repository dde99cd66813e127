"""``python -m ingest.agent --server URL --token T ...``: the agent without the web app."""

from ingest.agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
