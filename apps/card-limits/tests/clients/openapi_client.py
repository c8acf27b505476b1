"""Drives card-limits through a client generated from its /openapi.json.

The package `card_limits_client` is what `openapi-python-client generate`
made from the running service's document (apps/card-limits/tests/api_document.rs
generates it, then runs this). Nothing here is written by hand against the
HTTP API: every call goes through the generated functions and models.

Usage: openapi_client.py BASE_URL CARD
Prints one JSON object with what the service answered.
"""

import json
import sys

from card_limits_client import Client
from card_limits_client.api.default import get_cards_card, get_commands_id, post_commands
from card_limits_client.models import (
    Answered,
    Authorize,
    AuthorizeData,
    Record,
    SetLimit,
    SetLimitData,
)


def sync_command(client, body):
    """Sends a command and waits for its outcome: (status, [event actions])."""
    answer = post_commands.sync_detailed(client=client, body=body, sync=True, timeout_ms=10_000)
    parsed = answer.parsed
    if not isinstance(parsed, Answered):
        raise SystemExit(f"{body.action}: expected the answered command, got {answer.status_code}: {answer.content!r}")
    return answer.status_code, [event.action for event in parsed.events]


def main():
    base, card = sys.argv[1], sys.argv[2]
    client = Client(base_url=base, raise_on_unexpected_status=True)
    now = 1_780_272_000_000
    seen = {}
    seen["set_limit"] = sync_command(
        client, SetLimit(action="set-limit", key=card, data=SetLimitData(card=card, limit=10_000))
    )
    authorize = lambda auth_id, amount: Authorize(  # noqa: E731
        action="authorize",
        key=card,
        data=AuthorizeData(auth_id=auth_id, card=card, amount=amount, merchant="Corner Coffee", timestamp=now),
    )
    seen["approved"] = sync_command(client, authorize("a1", 2_500))
    seen["declined"] = sync_command(client, authorize("a2", 9_000))

    # Without waiting: 202 and where the command is; then read the card
    # once it reflects the command (read-your-writes through the document's
    # min_position), and look the command up by its id.
    accepted = post_commands.sync_detailed(client=client, body=authorize("a3", 1_000))
    record = accepted.parsed
    if not isinstance(record, Record):
        raise SystemExit(f"async authorize: {accepted.status_code}: {accepted.content!r}")
    seen["accepted"] = [accepted.status_code, accepted.headers.get("location") == f"/commands/{record.id}"]
    balance = get_cards_card.sync_detailed(card, client=client, min_position=record.position, wait_ms=10_000)
    seen["card"] = json.loads(balance.content)
    looked_up = get_commands_id.sync_detailed(str(record.id), client=client)
    seen["command"] = [looked_up.status_code, looked_up.parsed.action, looked_up.parsed.key]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
