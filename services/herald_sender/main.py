"""herald sender --channel email|sms|push --lane transactional|bulk: deliveries in, provider out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from herald_common.kafka import Handler
from herald_common.lifecycle import Lifecycle
from herald_common.topics import Topics
from herald_common.worker import WorkerContext, run_worker
from herald_providers.base import Provider
from herald_providers.smtp import SmtpConfig, SmtpProvider
from herald_sender.handler import Sender
from herald_sender.settings import SenderSettings


def build_provider(settings: SenderSettings) -> Provider:
    if settings.sender_channel == "email":
        return SmtpProvider(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                starttls=settings.smtp_starttls,
                use_tls=settings.smtp_use_tls,
                pool_size=settings.smtp_pool_size,
                timeout_s=settings.smtp_timeout_s,
                default_from=settings.email_from,
                default_from_name=settings.email_from_name,
            )
        )
    raise SystemExit(f"no provider is configured for channel {settings.sender_channel}")


async def serve(settings: SenderSettings, lifecycle: Lifecycle) -> None:
    topics = Topics(settings.kafka_topic_prefix)
    provider = build_provider(settings)

    async def make_handler(ctx: WorkerContext) -> tuple[Handler, Callable[[], Awaitable[None]]]:
        await provider.start()
        return Sender(ctx, settings, provider).handle, provider.close

    await run_worker(
        service="sender",
        settings=settings,
        lifecycle=lifecycle,
        topics=[topics.deliveries(settings.sender_channel, settings.sender_lane)],
        group_id=topics.group("sender", settings.sender_channel, settings.sender_lane),
        make_handler=make_handler,
    )
