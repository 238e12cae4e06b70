"""`python3 -m sse_publish GROUP EVENT DATA`: publishes one event, prints its id."""

from __future__ import annotations

import sys
from typing import List, Optional

from .publisher import TOKEN_ENV, URL_ENV, PublishError, publish


def main(args: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if args is None else args
    if len(args) != 3:
        print(f"usage: {URL_ENV}=... {TOKEN_ENV}=... python3 -m sse_publish GROUP EVENT DATA",
              file=sys.stderr)
        return 2
    group, event, data = args
    try:
        print(publish(group, event or None, data))
    except PublishError as error:
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        print(f"sse_publish: {error}{cause}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
