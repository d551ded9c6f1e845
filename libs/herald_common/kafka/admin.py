"""Topic administration."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions, replication_factor=replication_factor)
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        await admin.close()
